/** Argument checks that throw TypeError/RangeError naming the argument, its expected and actual value. */

export function show(v: unknown): string {
  if (typeof v === 'string') return `'${v}'`;
  if (typeof v === 'bigint') return `${v}n`;
  if (Array.isArray(v)) return `[${v.map(show).join(', ')}]`;
  if (v === null) return 'null';
  if (typeof v === 'object') return (v as object).constructor?.name ?? 'object';
  return String(v);
}

export function checkInt(name: string, v: unknown, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v)) throw new TypeError(`${name}: expected an integer, got ${show(v)}`);
  if (v < min || v > max) throw new RangeError(`${name}: must be in [${min}, ${max}], got ${v}`);
  return v;
}

export function checkNum(name: string, v: unknown, min: number, max: number, opts: { minOpen?: boolean; maxOpen?: boolean } = {}): number {
  if (typeof v !== 'number' || Number.isNaN(v)) throw new TypeError(`${name}: expected a number, got ${show(v)}`);
  const lo = opts.minOpen ? v > min : v >= min;
  const hi = opts.maxOpen ? v < max : v <= max;
  if (!lo || !hi) {
    throw new RangeError(`${name}: must be in ${opts.minOpen ? '(' : '['}${min}, ${max}${opts.maxOpen ? ')' : ']'}, got ${v}`);
  }
  return v;
}

export function checkOneOf<T extends string>(name: string, v: unknown, allowed: readonly T[]): T {
  if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) {
    throw new (typeof v === 'string' ? RangeError : TypeError)(
      `${name}: expected one of ${allowed.map((a) => `'${a}'`).join(', ')}, got ${show(v)}`,
    );
  }
  return v as T;
}

export function checkBool(name: string, v: unknown): boolean {
  if (typeof v !== 'boolean') throw new TypeError(`${name}: expected a boolean, got ${show(v)}`);
  return v;
}

export function checkOptions(name: string, v: unknown): Record<string, unknown> {
  if (v === undefined) return {};
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new TypeError(`${name}: expected an options object, got ${show(v)}`);
  return v as Record<string, unknown>;
}

/** Rejects null values of an options object (`prefix` + key names the field): `??` defaults would take null for "not given". */
export function rejectNulls(prefix: string, o: Record<string, unknown>): void {
  for (const k of Object.keys(o)) {
    if (o[k] === null) throw new TypeError(`${prefix}${k}: got null (null is not a value: give the field, or omit an optional one for its default)`);
  }
}

/** Rejects unknown option keys (catches typos such as `ration`). */
export function checkKeys(name: string, o: Record<string, unknown>, allowed: readonly string[]): void {
  for (const k of Object.keys(o)) {
    if (!allowed.includes(k)) throw new TypeError(`${name}: unknown option '${k}' (allowed: ${allowed.join(', ')})`);
  }
}
