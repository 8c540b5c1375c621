// The baseline a web developer would write: the same group-wise affine algorithm as arrowquant
// (min/max params, optional ggml-style range search with least-squares refit, round half to
// even, f16-rounded params, 4-bit packing), in plain JavaScript over a Float32Array.
const f16 = new Float32Array(1);
const f16round = (x) => {
  // Round to the nearest f16 (ties to even) via Math.fround tricks would be long; this uses the
  // exponent-aware quantum, exact for the normal range our params live in.
  if (x === 0 || !Number.isFinite(x)) return x;
  const e = Math.max(Math.floor(Math.log2(Math.abs(x))), -14);
  const q = 2 ** (e - 10);
  const r = x / q;
  const fl = Math.floor(r);
  const diff = r - fl;
  const n = diff > 0.5 || (diff === 0.5 && fl % 2 !== 0) ? fl + 1 : fl;
  f16[0] = n * q;
  return f16[0];
};
const roundHalfEven = (x) => {
  const f = Math.floor(x);
  const d = x - f;
  return d > 0.5 || (d === 0.5 && f % 2 !== 0) ? f + 1 : f;
};

function squaredError(x, a, b, s, m, qmax) {
  const inv = s === 0 ? 0 : 1 / s;
  let e2 = 0;
  for (let i = a; i < b; i++) {
    let q = roundHalfEven((x[i] - m) * inv);
    q = q < 0 ? 0 : q > qmax ? qmax : q;
    const e = q * s + m - x[i];
    e2 += e * e;
  }
  return e2;
}

/** Quantize `x` (rows × rowLen) to packed 4-bit codes with f16 scale/min per group. */
export function quantize4(x, rows, rowLen, group, search) {
  const qmax = 15;
  const rowBytes = Math.ceil(rowLen / 2);
  const codes = new Uint8Array(rows * rowBytes);
  const groups = Math.ceil(rowLen / group);
  const scales = new Float32Array(rows * groups);
  const mins = new Float32Array(rows * groups);
  for (let r = 0; r < rows; r++) {
    for (let g = 0; g < groups; g++) {
      const a = r * rowLen + g * group;
      const b = Math.min(a + group, (r + 1) * rowLen);
      let mn = Infinity, mx = -Infinity;
      for (let i = a; i < b; i++) {
        if (x[i] < mn) mn = x[i];
        if (x[i] > mx) mx = x[i];
      }
      let s = f16round((mx - mn) / qmax), m = f16round(mn);
      if (search && mx > mn) {
        const n = b - a;
        let sx = 0;
        for (let i = a; i < b; i++) sx += x[i];
        let best = squaredError(x, a, b, s, m, qmax);
        let sx2 = 0;
        for (let i = a; i < b; i++) sx2 += x[i] * x[i];
        let bestBound = Infinity, bs = 0, bm = 0;
        const consider = (off, is) => {
          let sl = 0, sl2 = 0, sxl = 0;
          for (let i = a; i < b; i++) {
            let l = roundHalfEven((x[i] - off) * is);
            l = l < 0 ? 0 : l > qmax ? qmax : l;
            sl += l; sl2 += l * l; sxl += x[i] * l;
          }
          const det = n * sl2 - sl * sl;
          if (det <= 0) return;
          const cs = (n * sxl - sx * sl) / det, cm = (sl2 * sx - sl * sxl) / det;
          if (!(cs > 0)) return;
          // Closed-form error of these codes under the refit params (no second pass).
          const bound = cs * cs * sl2 + 2 * cs * cm * sl + n * cm * cm - 2 * cs * sxl - 2 * cm * sx + sx2;
          if (bound < bestBound) { bestBound = bound; bs = cs; bm = cm; }
        };
        // The same candidates: a 5-point grid of inverse scales, then Lloyd refits (1 at 4 bits).
        for (const t of [-0.8, -0.4, 0, 0.4, 0.8]) consider(mn, (qmax + t) / (mx - mn));
        if (bestBound < Infinity) consider(bm, 1 / bs);
        if (bestBound < Infinity) {
          const cs = f16round(bs), cm = f16round(bm);
          if (squaredError(x, a, b, cs, cm, qmax) < best) { s = cs; m = cm; }
        }
      }
      scales[r * groups + g] = s;
      mins[r * groups + g] = m;
      const inv = s === 0 ? 0 : 1 / s;
      for (let i = a; i < b; i++) {
        let q = roundHalfEven((x[i] - m) * inv);
        q = q < 0 ? 0 : q > qmax ? qmax : q;
        const k = i - r * rowLen;
        codes[r * rowBytes + (k >> 1)] |= q << ((k & 1) * 4);
      }
    }
  }
  return { codes, scales, mins };
}

// f16 bits → f32, as a web developer would write it (no lookup table).
function f16ToF32(h) {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return sign * m * 2 ** -24;
  if (e === 31) return m ? NaN : sign * Infinity;
  return sign * (1 + m / 1024) * 2 ** (e - 15);
}

/**
 * A whole safetensors file the plain-JS way: parse the header, decode each F32/F16 tensor of two
 * or more dimensions (the ones arrowquant quantizes) to a Float32Array of [shape[0], rest] and
 * quantize it with `quantize4`. Returns the number of tensors and values quantized.
 */
export function quantizeSafetensors4(bytes, group, search) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLen = Number(view.getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLen)));
  const base = 8 + headerLen;
  let tensors = 0, values = 0;
  for (const [name, t] of Object.entries(header)) {
    if (name === '__metadata__' || t.shape.length < 2 || (t.dtype !== 'F32' && t.dtype !== 'F16')) continue;
    const n = t.shape.reduce((a, b) => a * b, 1);
    const x = new Float32Array(n);
    const at = base + t.data_offsets[0];
    if (t.dtype === 'F32') for (let i = 0; i < n; i++) x[i] = view.getFloat32(at + 4 * i, true);
    else for (let i = 0; i < n; i++) x[i] = f16ToF32(view.getUint16(at + 2 * i, true));
    quantize4(x, t.shape[0], n / t.shape[0], group, search);
    tensors += 1;
    values += n;
  }
  return { tensors, values };
}
