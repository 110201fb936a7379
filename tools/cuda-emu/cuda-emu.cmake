# The CUDA emulator's build wiring (tools/cuda-emu/README.md), included by CMakeLists.txt when KVTRIM_CUDA_EMU is ON:
# the kernels of cuda/ are rewritten by emulate.py at build time and compiled by the host C++ compiler against the
# emulator's headers, with emu.cc standing in for the CUDA runtime (KVT_WITH_CUDA on, no nvcc, no CUDA runtime).
#
#   kvt_emu_sources(<out-var>)       the generated kernel translation units plus emu.cc, for kvtrim_core
#   kvt_emu_configure_core(<target>) generator dependency, KVT_WITH_CUDA / KVT_CUDA_EMU, emulator headers first
#   kvt_emu_configure_addon(<target>) the static UBSan runtime of the checked kernels, when they are checked
set(KVT_EMU_DIR ${CMAKE_CURRENT_LIST_DIR})
set(KVT_EMU_OUT ${CMAKE_BINARY_DIR}/cuda-emu)
find_package(Python3 REQUIRED COMPONENTS Interpreter)
message(STATUS "kvtrim: CUDA kernels for the CPU emulator (tools/cuda-emu), compiled by ${CMAKE_CXX_COMPILER}")

option(KVTRIM_CUDA_EMU_FMA "Emulated kernels: contract a*b+c into FMAs like nvcc (x86-64 hosts with FMA)" ON)
option(KVTRIM_CUDA_EMU_UBSAN "Emulated kernels: UBSan alignment/bounds/shift/conversion checks" ON)

function(kvt_emu_sources out_var)
  # cuda/*.cu -> <build>/cuda-emu/*.cu.cc (and the headers) at build time; compiled as C++ with the emulator headers.
  file(GLOB inputs CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/cuda/*.cu ${CMAKE_SOURCE_DIR}/cuda/*.cuh
       ${CMAKE_SOURCE_DIR}/cuda/*.h)
  set(sources)
  set(generated)
  foreach(f ${inputs})
    get_filename_component(n ${f} NAME)
    if(n MATCHES "\\.cu$")
      list(APPEND sources ${KVT_EMU_OUT}/${n}.cc)
      list(APPEND generated ${KVT_EMU_OUT}/${n}.cc)
    else()
      list(APPEND generated ${KVT_EMU_OUT}/${n})
    endif()
  endforeach()
  add_custom_command(OUTPUT ${KVT_EMU_OUT}/stamp
                     BYPRODUCTS ${generated}
                     COMMAND ${Python3_EXECUTABLE} ${KVT_EMU_DIR}/emulate.py ${CMAKE_SOURCE_DIR}/cuda ${KVT_EMU_OUT}
                             --stamp ${KVT_EMU_OUT}/stamp
                     DEPENDS ${inputs} ${KVT_EMU_DIR}/emulate.py
                     COMMENT "Rewriting cuda/ for the CUDA emulator")
  add_custom_target(kvtrim_cuda_emu_sources DEPENDS ${KVT_EMU_OUT}/stamp)
  list(APPEND sources ${KVT_EMU_DIR}/emu.cc)
  # Kernel translation units: nvcc-like FP contraction (FMA) where the host has it, uninitialised locals filled with
  # a pattern (register reads before writes show up as huge values).
  include(CheckCXXCompilerFlag)
  # (nvcc compiles kernels as host stubs: unused kernel parameters and prefetch-buffer copies never warn there)
  set(flags -O2 -Wno-unknown-pragmas -Wno-unused-parameter -Wno-maybe-uninitialized)
  check_cxx_compiler_flag(-ftrivial-auto-var-init=pattern KVT_HAVE_AUTO_INIT)
  if(KVT_HAVE_AUTO_INIT)
    list(APPEND flags -ftrivial-auto-var-init=pattern)
  endif()
  if(KVTRIM_CUDA_EMU_FMA AND CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64" AND EXISTS /proc/cpuinfo)
    file(STRINGS /proc/cpuinfo cpu_flags REGEX "^flags" LIMIT_COUNT 1)
    if(cpu_flags MATCHES " fma ")
      list(APPEND flags -mfma -ffp-contract=fast)
    endif()
  endif()
  # What a GPU checks and x86 does not: natural alignment of every access (vector loads fault on a GPU), plus bounds of
  # fixed-size (register / shared) arrays, over-wide shifts, out-of-range float->int conversions, division by zero.
  # UBSan in the kernel translation units, runtime linked statically; first error aborts with the source location.
  set(ubsan -fsanitize=alignment,bounds,shift,float-cast-overflow,integer-divide-by-zero,vla-bound,bool,enum,return,unreachable
      -fno-sanitize-recover=all)
  if(KVTRIM_CUDA_EMU_UBSAN)
    set(CMAKE_REQUIRED_LINK_OPTIONS ${ubsan} -static-libubsan)
    string(REPLACE ";" " " ubsan_str "${ubsan}")
    check_cxx_compiler_flag("${ubsan_str}" KVT_HAVE_UBSAN)
    unset(CMAKE_REQUIRED_LINK_OPTIONS)
    if(KVT_HAVE_UBSAN)
      list(APPEND flags ${ubsan})
    endif()
  endif()
  set_source_files_properties(${generated} PROPERTIES GENERATED TRUE)
  set_source_files_properties(${sources} PROPERTIES COMPILE_OPTIONS "${flags}")
  set(${out_var} ${sources} PARENT_SCOPE)
endfunction()

function(kvt_emu_configure_core target)
  add_dependencies(${target} kvtrim_cuda_emu_sources)
  target_compile_definitions(${target} PUBLIC KVT_WITH_CUDA=1 KVT_CUDA_EMU=1)
  target_include_directories(${target} BEFORE PUBLIC ${KVT_EMU_DIR})
endfunction()

function(kvt_emu_configure_addon target)
  if(KVT_HAVE_UBSAN)
    target_link_options(${target} PRIVATE -fsanitize=undefined -static-libubsan)
  endif()
endfunction()
