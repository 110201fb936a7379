#!/usr/bin/env python3
"""kvtrim from Python: the C ABI of libkvtrim.so over ctypes, fed by DLPack (no compiled extension).

Any array that exports DLPack (`__dlpack__` / `__dlpack_device__`) is passed zero-copy: numpy >= 1.22 arrays
(CPU backend), PyTorch CPU tensors (CPU backend) and CUDA tensors (CUDA kernels, enqueued on the caller's stream),
CuPy arrays, JAX arrays, ... The DLTensor inside the producer's capsule is handed to kvtrim as is (kvt_tensor has
DLTensor's layout): shapes, strides (views such as a transposed [N, H, d] cache), dtypes f32 / f16 / bf16 / i32.

    import numpy as np
    from kvtrim_dlpack import Kvtrim
    kv = Kvtrim()                                   # finds libkvtrim.so (see find_library)
    scores = kv.nestedkv_scores(keys)               # keys [H, N, d] -> f32 [H, N]
    indices, counts = kv.select_tokens(scores, keep=N // 4, budget='adaptive')
    k_small, v_small, kept = kv.gather_kv(keys, values, indices, counts)

Every op mirrors a kvt_* function of kvtrim.h with the same argument names; options are keywords named as the C
struct fields (defaults: the C kvt_<op>_default_opts, the same the Node API uses). Outputs may be passed
(`out=`, `indices=`, ...); when omitted they are allocated with the library of the first input (numpy or torch;
for other producers pass them). Errors raise KvtrimError (with .status, and TypeError / ValueError bases for
kvtrim's type and range errors) carrying kvt_last_error()'s message.

CUDA tensors: the op is enqueued on `stream` (a cudaStream_t as int, a torch.cuda.Stream, a cupy Stream) or by
default on the producer's current stream (torch / cupy), else the legacy default stream; the producer is asked
through __dlpack__(stream=...) to order its pending work before that stream. Nothing synchronises: keep the
arrays alive until the stream has run the op (as with any asynchronous kernel).

DLPack versions: a producer that supports DLPack 1.x (numpy >= 2.1, torch >= 2.4) is asked for a versioned
capsule ("dltensor_versioned", DLManagedTensorVersioned; outputs flagged read-only are refused); older producers
give the legacy "dltensor" capsule (DLManagedTensor). The capsule is not consumed: it stays alive (and with it the
memory) during the call and is released by its producer's destructor afterwards. numpy < 2.1 cannot export
read-only arrays at all (BufferError): pass writable arrays. Torch tensors that require grad must be detached.
"""
import ctypes
import ctypes.util
import json
import os
import shutil
import subprocess
import sys

__all__ = ["Kvtrim", "KvtrimError", "find_library"]

# ---- kvtrim.h / dlpack.h layouts ---------------------------------------------------------------------------------

KVT_DEVICE_CPU, KVT_DEVICE_CUDA, KVT_DEVICE_CUDA_HOST = 1, 2, 3
DLPACK_FLAG_READ_ONLY = 1


class _Device(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class _DType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class Tensor(ctypes.Structure):
    """kvt_tensor == DLTensor."""

    _fields_ = [
        ("data", ctypes.c_void_p),
        ("device", _Device),
        ("ndim", ctypes.c_int32),
        ("dtype", _DType),
        ("shape", ctypes.POINTER(ctypes.c_int64)),
        ("strides", ctypes.POINTER(ctypes.c_int64)),
        ("byte_offset", ctypes.c_uint64),
    ]


class _ManagedTensor(ctypes.Structure):  # DLManagedTensor (legacy capsule "dltensor")
    _fields_ = [("dl_tensor", Tensor), ("manager_ctx", ctypes.c_void_p), ("deleter", ctypes.c_void_p)]


class _Version(ctypes.Structure):
    _fields_ = [("major", ctypes.c_uint32), ("minor", ctypes.c_uint32)]


class _ManagedTensorVersioned(ctypes.Structure):  # DLManagedTensorVersioned (capsule "dltensor_versioned")
    _fields_ = [
        ("version", _Version),
        ("manager_ctx", ctypes.c_void_p),
        ("deleter", ctypes.c_void_p),
        ("flags", ctypes.c_uint64),
        ("dl_tensor", Tensor),
    ]


class Moments(ctypes.Structure):
    _fields_ = [("n", Tensor), ("mu_k", Tensor), ("mu_v", Tensor), ("m", Tensor)]


class SelectOpts(ctypes.Structure):
    _fields_ = [("keep", ctypes.c_int32), ("budget", ctypes.c_int32), ("safeguard", ctypes.c_double),
                ("sinks", ctypes.c_int32), ("recent", ctypes.c_int32)]


class NestedkvOpts(ctypes.Structure):
    _fields_ = [("window", ctypes.c_int32), ("block", ctypes.c_int32), ("prior", ctypes.c_double * 3),
                ("beta", ctypes.c_double), ("tau", ctypes.c_double), ("kappa", ctypes.c_double),
                ("tail", ctypes.c_double), ("sinks", ctypes.c_int32), ("scales", ctypes.c_int32)]


class SnapkvOpts(ctypes.Structure):
    _fields_ = [("window", ctypes.c_int32), ("kernel", ctypes.c_int32), ("pool", ctypes.c_int32),
                ("scale", ctypes.c_double)]


class DecodeOpts(ctypes.Structure):
    _fields_ = [("order", ctypes.c_int32), ("use_clip", ctypes.c_int32), ("scale", ctypes.c_double),
                ("clip", ctypes.c_double)]


class MomentkvSelectOpts(ctypes.Structure):
    _fields_ = [("keep", ctypes.c_int32), ("rounds", ctypes.c_int32), ("r", ctypes.c_int32), ("mi", ctypes.c_int32),
                ("eps", ctypes.c_double)]


class SpdOpts(ctypes.Structure):
    _fields_ = [("lambda_", ctypes.c_double), ("check", ctypes.c_int32)]


class GrkvOpts(ctypes.Structure):
    _fields_ = [("window", ctypes.c_int32), ("cg_iters", ctypes.c_int32), ("gamma", ctypes.c_double),
                ("lambda_", ctypes.c_double), ("cap_key", ctypes.c_double), ("cap_value", ctypes.c_double),
                ("tol", ctypes.c_double), ("scale", ctypes.c_double), ("accept", ctypes.c_int32)]


GRKV_DIAG_COLS = 14
# Option values given by name (kvtrim.h enums).
_ENUMS = {
    "budget": {"uniform": 0, "adaptive": 1},
    "scales": {"all": 0, "global": 1},
    "pool": {"avg": 0, "max": 1},
    "accept": {"best": 0, "joint": 1},
}

_P = ctypes.POINTER
_T = _P(Tensor)
_SIGNATURES = {
    "kvt_last_error": (ctypes.c_char_p, []),
    "kvt_abi_version": (ctypes.c_int, []),
    "kvt_built_with_cuda": (ctypes.c_int, []),
    "kvt_num_threads": (ctypes.c_int, []),
    "kvt_keydiff_scores": (ctypes.c_int, [_T, _T, ctypes.c_void_p]),
    "kvt_select_default_opts": (None, [_P(SelectOpts)]),
    "kvt_select_tokens": (ctypes.c_int, [_T, _P(SelectOpts), _T, _T, ctypes.c_void_p]),
    "kvt_select_capacity": (ctypes.c_int64, [ctypes.c_int64, ctypes.c_int64, _P(SelectOpts)]),
    "kvt_gather_kv": (ctypes.c_int, [_T, _T, _T, _T, _T, _T, _T, _P(Moments), ctypes.c_void_p]),
    "kvt_nestedkv_default_opts": (None, [_P(NestedkvOpts)]),
    "kvt_nestedkv_scores": (ctypes.c_int, [_T, _P(NestedkvOpts), _T, ctypes.c_void_p]),
    "kvt_snapkv_default_opts": (None, [_P(SnapkvOpts)]),
    "kvt_snapkv_scores": (ctypes.c_int, [_T, _T, _P(SnapkvOpts), _T, ctypes.c_void_p]),
    "kvt_moments_merge": (ctypes.c_int, [_T, _T, _T, _T, _P(Moments), ctypes.c_void_p]),
    "kvt_decode_default_opts": (None, [_P(DecodeOpts)]),
    "kvt_decode_attention": (ctypes.c_int, [_T, _T, _T, _T, _P(Moments), _T, _P(DecodeOpts), _T, ctypes.c_void_p]),
    "kvt_momentkv_select_default_opts": (None, [_P(MomentkvSelectOpts)]),
    "kvt_momentkv_select": (ctypes.c_int, [_T, _T, _T, _P(MomentkvSelectOpts), _T, _T, _P(Moments), _T,
                                           ctypes.c_void_p]),
    "kvt_spd_default_opts": (None, [_P(SpdOpts)]),
    "kvt_spd_solve": (ctypes.c_int, [_T, _T, _P(SpdOpts), _T, _T, ctypes.c_void_p]),
    "kvt_grkv_default_opts": (None, [_P(GrkvOpts)]),
    "kvt_grkv_merge": (ctypes.c_int, [_T, _T, _T, _T, _T, _T, _T, _T, _P(GrkvOpts), _T, _T, _T, _T,
                                      ctypes.c_void_p]),
}

_STATUS = {1: "KVT_ERR_TYPE", 2: "KVT_ERR_RANGE", 3: "KVT_ERR_CUDA", 4: "KVT_ERR_UNSUPPORTED", 5: "KVT_ERR_INTERNAL"}


class KvtrimError(Exception):
    """A failed kvt_* call: .status (kvt_status), .function, and kvt_last_error()'s message."""

    def __init__(self, function, status, message):
        super().__init__(f"{function}: {message} ({_STATUS.get(status, status)})")
        self.function, self.status = function, status


class KvtrimTypeError(KvtrimError, TypeError):
    pass


class KvtrimRangeError(KvtrimError, ValueError):
    pass


# ---- finding the library ----------------------------------------------------------------------------------------


def find_library():
    """libkvtrim.so: $KVTRIM_LIBRARY; else the kvtrim npm package as Node resolves it from the current directory
    (require('kvtrim').nativeLibrary().library); else the system search path (ctypes.util.find_library)."""
    path = os.environ.get("KVTRIM_LIBRARY")
    if path:
        return path
    node = shutil.which("node")
    if node:
        r = subprocess.run([node, "-p", "JSON.stringify(require('kvtrim').nativeLibrary())"], capture_output=True,
                           text=True, env={**os.environ, "KVTRIM_BACKEND": "cpu"})
        if r.returncode == 0:
            return json.loads(r.stdout)["library"]
    found = ctypes.util.find_library("kvtrim")
    if found:
        return found
    raise OSError("libkvtrim.so not found: set KVTRIM_LIBRARY, run from a project that has the kvtrim npm package, "
                  "or install a source build (cmake --install)")


# ---- DLPack views -----------------------------------------------------------------------------------------------

_api = ctypes.pythonapi
_api.PyCapsule_GetPointer.restype = ctypes.c_void_p
_api.PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
_api.PyCapsule_IsValid.restype = ctypes.c_int
_api.PyCapsule_IsValid.argtypes = [ctypes.py_object, ctypes.c_char_p]


def _device_of(x):
    dev = getattr(x, "__dlpack_device__", None)
    if dev is None or not hasattr(x, "__dlpack__"):
        raise TypeError(f"expected an array that exports DLPack (__dlpack__), got {type(x).__name__}")
    t, i = dev()
    return int(t), int(i)


def _dlpack_stream(handle):
    # DLPack's `stream` for CUDA: 1 = the legacy default stream (0 is not allowed), else the cudaStream_t.
    return handle if handle else 1


def _capsule(x, device_type, stream):
    kw = {"stream": _dlpack_stream(stream)} if device_type == KVT_DEVICE_CUDA else {}
    try:
        return x.__dlpack__(max_version=(1, 0), **kw)
    except TypeError:  # a producer without DLPack 1.x (no max_version keyword): the legacy capsule
        return x.__dlpack__(**kw)


class _View:
    """A borrowed DLTensor of one argument; `keep` holds the capsule (and with it the memory) alive."""

    def __init__(self, x, name, stream, writable):
        device_type, _ = _device_of(x)
        self.keep = _capsule(x, device_type, stream)
        if _api.PyCapsule_IsValid(self.keep, b"dltensor_versioned"):
            m = _ManagedTensorVersioned.from_address(_api.PyCapsule_GetPointer(self.keep, b"dltensor_versioned"))
            if m.version.major != 1:
                raise TypeError(f"{name}: DLPack {m.version.major}.{m.version.minor} is not supported (1.x is)")
            if writable and m.flags & DLPACK_FLAG_READ_ONLY:
                raise TypeError(f"{name}: the array is read-only, but kvtrim writes this output")
        elif _api.PyCapsule_IsValid(self.keep, b"dltensor"):
            m = _ManagedTensor.from_address(_api.PyCapsule_GetPointer(self.keep, b"dltensor"))
        else:
            raise TypeError(f"{name}: __dlpack__ did not return an unused DLPack capsule")
        self.managed = m
        self.tensor = m.dl_tensor  # a view into the capsule's struct (no copy)
        self.ptr = ctypes.pointer(self.tensor)


def _namespace(x):
    """'numpy' or 'torch' when the array's own library can allocate outputs like it, else None."""
    mod = type(x).__module__.split(".")[0]
    return mod if mod in ("numpy", "torch") else None


_NP = {"f32": "float32", "f16": "float16", "i32": "int32"}


def _empty_like(ref, shape, dtype):
    ns = _namespace(ref)
    if ns == "numpy":
        import numpy
        if dtype == "bf16":
            raise TypeError("numpy has no bfloat16: pass the output array")
        return numpy.empty(shape, dtype=_NP[dtype])
    if ns == "torch":
        import torch
        dt = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16, "i32": torch.int32}[dtype]
        return torch.empty(shape, dtype=dt, device=ref.device)
    raise TypeError(f"outputs of {type(ref).__name__} inputs cannot be allocated here: pass them")


def _dtype_name(view):
    dt = view.tensor.dtype
    return {(2, 32): "f32", (2, 16): "f16", (4, 16): "bf16", (0, 32): "i32"}.get((dt.code, dt.bits), "?")


def _shape(view):
    t = view.tensor
    return tuple(t.shape[i] for i in range(t.ndim))


def _stream_handle(stream, ref):
    """cudaStream_t as an int: the given stream, else the current stream of the producer (torch / cupy), else 0."""
    if stream is not None:
        for attr in ("cuda_stream", "ptr"):
            if hasattr(stream, attr):
                return int(getattr(stream, attr))
        return int(stream)
    ns = type(ref).__module__.split(".")[0]
    if ns == "torch":
        import torch
        return int(torch.cuda.current_stream(ref.device).cuda_stream)
    if ns == "cupy":
        import cupy
        return int(cupy.cuda.get_current_stream().ptr)
    return 0


def _set_opts(opts, kw, fn):
    for key, value in kw.items():
        field = "lambda_" if key == "lambda" else key
        if field not in {f for f, _ in opts._fields_}:
            raise TypeError(f"{fn}: unknown option '{key}'")
        if isinstance(value, str):
            if key not in _ENUMS or value not in _ENUMS[key]:
                raise ValueError(f"{fn}: {key} = '{value}' is not one of {sorted(_ENUMS.get(key, {}))}")
            value = _ENUMS[key][value]
        if key == "prior":
            if len(value) != 3:
                raise ValueError(f"{fn}: prior must have 3 weights")
            value = (ctypes.c_double * 3)(*value)
        setattr(opts, field, value)
    return opts


# ---- the library ------------------------------------------------------------------------------------------------


class _Call:
    """The DLPack views of one call (inputs first); the CUDA stream is chosen from the first argument."""

    def __init__(self, lib, fn, first, stream):
        self.lib, self.fn = lib, fn
        self.device_type, _ = _device_of(first)
        self.stream = _stream_handle(stream, first) if self.device_type == KVT_DEVICE_CUDA else 0
        self.first = first
        self.views = []

    def __call__(self, x, name, writable=False):
        if x is None:
            return None
        v = _View(x, name, self.stream, writable)
        self.views.append(v)
        return v.ptr

    def out(self, x, name, shape, dtype):
        """An output: the given array, or a new one like the first input."""
        arr = _empty_like(self.first, shape, dtype) if x is None else x
        return arr, self(arr, name, writable=True)

    def moments(self, m, name):
        if m is None:
            return None
        if len(m) != 4:
            raise TypeError(f"{name}: expected (n, mu_k, mu_v, m)")
        parts = [_View(a, f"{name}.{k}", self.stream, True) for a, k in zip(m, ("n", "mu_k", "mu_v", "m"))]
        self.views.extend(parts)
        return ctypes.pointer(Moments(*[p.tensor for p in parts]))

    def run(self, *args):
        st = getattr(self.lib._lib, self.fn)(*args, ctypes.c_void_p(self.stream or None))
        self.lib._check(self.fn, st)


class Kvtrim:
    """The ops of libkvtrim.so (see the module documentation)."""

    def __init__(self, path=None):
        self.path = path or find_library()
        self._lib = ctypes.CDLL(self.path)
        for name, (res, args) in _SIGNATURES.items():
            f = getattr(self._lib, name)
            f.restype, f.argtypes = res, args

    # -- library queries
    @property
    def abi_version(self):
        return self._lib.kvt_abi_version()

    @property
    def built_with_cuda(self):
        return bool(self._lib.kvt_built_with_cuda())

    @property
    def threads(self):
        return self._lib.kvt_num_threads()

    def _check(self, fn, status):
        if status == 0:
            return
        msg = (self._lib.kvt_last_error() or b"").decode("utf-8", "replace")
        cls = {1: KvtrimTypeError, 2: KvtrimRangeError}.get(status, KvtrimError)
        raise cls(fn, status, msg)

    def _opts(self, cls, default_fn, kw, fn):
        o = cls()
        getattr(self._lib, default_fn)(ctypes.byref(o))
        return _set_opts(o, kw, fn)

    # -- ops (kvtrim.h)
    def keydiff_scores(self, keys, out=None, stream=None):
        """KeyDiff scores f32 [H, N] of keys [H, N, d]."""
        c = _Call(self, "kvt_keydiff_scores", keys, stream)
        k = c(keys, "keys")
        out, o = c.out(out, "out", _shape(c.views[0])[:2], "f32")
        c.run(k, o)
        return out

    def nestedkv_scores(self, keys, out=None, stream=None, **opts):
        """NestedKV scores f32 [H, N]; options: window, block, prior, beta, tau, kappa, tail, sinks, scales."""
        o = self._opts(NestedkvOpts, "kvt_nestedkv_default_opts", opts, "nestedkv_scores")
        c = _Call(self, "kvt_nestedkv_scores", keys, stream)
        k = c(keys, "keys")
        out, op = c.out(out, "out", _shape(c.views[0])[:2], "f32")
        c.run(k, ctypes.byref(o), op)
        return out

    def snapkv_scores(self, queries, keys, out=None, stream=None, **opts):
        """SnapKV scores f32 [Hkv, N] of window queries [Hq, W, d] and keys [Hkv, N, d]; options: window, kernel,
        pool, scale."""
        o = self._opts(SnapkvOpts, "kvt_snapkv_default_opts", opts, "snapkv_scores")
        c = _Call(self, "kvt_snapkv_scores", keys, stream)
        q, k = c(queries, "queries"), c(keys, "keys")
        out, op = c.out(out, "out", _shape(c.views[1])[:2], "f32")
        c.run(q, k, ctypes.byref(o), op)
        return out

    def select_capacity(self, H, N, **opts):
        o = self._opts(SelectOpts, "kvt_select_default_opts", opts, "select_capacity")
        return self._lib.kvt_select_capacity(H, N, ctypes.byref(o))

    def select_tokens(self, scores, indices=None, counts=None, stream=None, **opts):
        """(indices i32 [H, cap], counts i32 [H]); options: keep (required), budget, safeguard, sinks, recent."""
        o = self._opts(SelectOpts, "kvt_select_default_opts", opts, "select_tokens")
        c = _Call(self, "kvt_select_tokens", scores, stream)
        s = c(scores, "scores")
        H, N = _shape(c.views[0])
        indices, ip = c.out(indices, "indices", (H, self._lib.kvt_select_capacity(H, N, ctypes.byref(o))), "i32")
        counts, cp = c.out(counts, "counts", (H,), "i32")
        c.run(s, ctypes.byref(o), ip, cp)
        return indices, counts

    def gather_kv(self, keys, values, indices, counts, keys_out=None, values_out=None, counts_out=None, moments=None,
                  stream=None):
        """Compaction: (keys_out [H, cap, d], values_out [H, cap, dv], counts_out [H]); the evicted rows are merged into
        `moments` = (n, mu_k, mu_v, m) when given."""
        c = _Call(self, "kvt_gather_kv", keys, stream)
        k, v, i, n = c(keys, "keys"), c(values, "values"), c(indices, "indices"), c(counts, "counts")
        (H, _, d), dv, cap = _shape(c.views[0]), _shape(c.views[1])[2], max(1, _shape(c.views[2])[1])
        dt = _dtype_name(c.views[0])
        keys_out, ko = c.out(keys_out, "keys_out", (H, cap, d), dt)
        values_out, vo = c.out(values_out, "values_out", (H, cap, dv), _dtype_name(c.views[1]))
        counts_out, co = c.out(counts_out, "counts_out", (H,), "i32")
        c.run(k, v, i, n, ko, vo, co, c.moments(moments, "moments"))
        return keys_out, values_out, counts_out

    def moments_merge(self, keys, values, evicted_indices, counts, moments, stream=None):
        """Merges the listed rows into `moments` = (n, mu_k, mu_v, m) in place."""
        c = _Call(self, "kvt_moments_merge", keys, stream)
        args = [c(keys, "keys"), c(values, "values"), c(evicted_indices, "evicted_indices"), c(counts, "counts")]
        c.run(*args, c.moments(moments, "moments"))
        return moments

    def decode_attention(self, queries, keys, values, counts, moments=None, clip=None, out=None, stream=None, **opts):
        """Decode attention f32 [Hq, dv] / [Hq, T, dv] over a compacted cache; options: order, use_clip, scale, clip
        (a number; or pass `clip` as an f32 [Hkv] array)."""
        if clip is not None and not hasattr(clip, "__dlpack__"):
            opts = {**opts, "use_clip": 1, "clip": float(clip)}
            clip = None
        o = self._opts(DecodeOpts, "kvt_decode_default_opts", opts, "decode_attention")
        c = _Call(self, "kvt_decode_attention", keys, stream)
        q, k, v, n = c(queries, "queries"), c(keys, "keys"), c(values, "values"), c(counts, "counts")
        qs, dv = _shape(c.views[0]), _shape(c.views[2])[2]
        m = c.moments(moments, "moments")
        cl = c(clip, "clip")
        out, op = c.out(out, "out", qs[:-1] + (dv,), "f32")
        c.run(q, k, v, n, m, cl, ctypes.byref(o), op)
        return out

    def momentkv_select(self, scores, keys, values, moments, indices=None, counts=None, evicted_round=None,
                        stream=None, **opts):
        """(indices, counts); merges every evicted row into `moments`; options: keep (required), rounds, r, mi, eps.
        evicted_round: an i32 [H, N] output, or True to allocate one (then returned third)."""
        o = self._opts(MomentkvSelectOpts, "kvt_momentkv_select_default_opts", opts, "momentkv_select")
        c = _Call(self, "kvt_momentkv_select", scores, stream)
        s, k, v = c(scores, "scores"), c(keys, "keys"), c(values, "values")
        H, N = _shape(c.views[0])
        indices, ip = c.out(indices, "indices", (H, o.keep), "i32")
        counts, cp = c.out(counts, "counts", (H,), "i32")
        want_round = evicted_round is True
        evicted_round, ep = c.out(None if want_round else evicted_round, "evicted_round", (H, N), "i32") \
            if evicted_round is not None else (None, None)
        c.run(s, k, v, ctypes.byref(o), ip, cp, c.moments(moments, "moments"), ep)
        return (indices, counts, evicted_round) if want_round else (indices, counts)

    def spd_solve(self, a, b, x=None, info=None, stream=None, **opts):
        """(x, info): X_b = (A_b + lambda I)^-1 B_b, a [B, n, n], b [B, n, r]; options: lambda, check."""
        o = self._opts(SpdOpts, "kvt_spd_default_opts", opts, "spd_solve")
        c = _Call(self, "kvt_spd_solve", a, stream)
        ap, bp = c(a, "a"), c(b, "b")
        bs = _shape(c.views[1])
        x, xp = c.out(x, "x", bs, "f32")
        info, ip = c.out(info, "info", (bs[0],), "i32")
        c.run(ap, bp, ctypes.byref(o), xp, ip)
        return x, info

    def grkv_merge(self, keys, values, indices, counts, queries, query_positions, scores, weights=None,
                   keys_out=None, values_out=None, counts_out=None, diagnostics=None, stream=None, **opts):
        """GRKV merge: (keys_out, values_out, counts_out[, diagnostics]); options: window, cg_iters, gamma, lambda,
        cap_key, cap_value, tol, scale, accept. diagnostics: an f32 [H, 14] output, or True to allocate one."""
        o = self._opts(GrkvOpts, "kvt_grkv_default_opts", opts, "grkv_merge")
        c = _Call(self, "kvt_grkv_merge", keys, stream)
        args = [c(keys, "keys"), c(values, "values"), c(indices, "indices"), c(counts, "counts"),
                c(queries, "queries"), c(query_positions, "query_positions"), c(weights, "weights"),
                c(scores, "scores")]
        (H, _, d), dv, cap = _shape(c.views[0]), _shape(c.views[1])[2], max(1, _shape(c.views[2])[1])
        keys_out, ko = c.out(keys_out, "keys_out", (H, cap, d), _dtype_name(c.views[0]))
        values_out, vo = c.out(values_out, "values_out", (H, cap, dv), _dtype_name(c.views[1]))
        counts_out, co = c.out(counts_out, "counts_out", (H,), "i32")
        want_diag = diagnostics is True
        diagnostics, dg = c.out(None if want_diag else diagnostics, "diagnostics", (H, GRKV_DIAG_COLS), "f32") \
            if diagnostics is not None else (None, None)
        c.run(*args, ctypes.byref(o), ko, vo, co, dg)
        return (keys_out, values_out, counts_out, diagnostics) if want_diag else (keys_out, values_out, counts_out)


def main():
    kv = Kvtrim()
    print(f"{kv.path}: ABI {kv.abi_version}, CUDA {'yes' if kv.built_with_cuda else 'no'}, {kv.threads} CPU threads")
    try:
        import numpy as np
    except ImportError:
        print("numpy is not installed: nothing to run")
        return 0
    rng = np.random.default_rng(1)
    H, N, d = 4, 4096, 64
    keys = rng.standard_normal((H, N, d), dtype=np.float32)
    values = rng.standard_normal((H, N, d), dtype=np.float32)
    scores = kv.nestedkv_scores(keys)
    indices, counts = kv.select_tokens(scores, keep=N // 4, budget="adaptive")
    k_small, v_small, kept = kv.gather_kv(keys, values, indices, counts)
    print(f"kept per head: {' '.join(map(str, kept))} (of {N}); compacted keys {tuple(k_small.shape)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
