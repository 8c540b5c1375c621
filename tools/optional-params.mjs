// Run after wasm-bindgen on its .d.ts: wasm-bindgen declares every parameter positionally, so a
// trailing parameter the Rust side accepts as absent (typed `… | undefined`) is still required in
// TypeScript (`new ModelQuantizer()` fails to type-check). This marks each run of trailing
// parameters whose type admits `undefined` as optional (`name?: T`), and nothing else.
//   node tools/optional-params.mjs pkg/wasm/arrowquant.d.ts
import { readFileSync, writeFileSync } from 'node:fs';

/** Split a parameter list at its top-level commas (types may hold `{ a: b, c: d }`, `<…>`, `(…)`). */
function splitParams(list) {
  const out = [];
  let depth = 0;
  let cur = '';
  for (const ch of list) {
    if ('({[<'.includes(ch)) depth++;
    if (')}]>'.includes(ch)) depth--;
    if (ch === ',' && depth === 0) {
      out.push(cur);
      cur = '';
    } else cur += ch;
  }
  if (cur.trim()) out.push(cur);
  return out;
}

function rewrite(params) {
  const parts = splitParams(params);
  for (let i = parts.length - 1; i >= 0; i--) {
    const m = /^(\s*)([A-Za-z_$][\w$]*)(\??): (.*)$/s.exec(parts[i]);
    if (!m || !/(^|\|)\s*undefined\s*$/.test(m[4])) break;
    const type = m[4].replace(/\s*\|\s*undefined\s*$/, '');
    parts[i] = `${m[1]}${m[2]}?: ${type}`;
  }
  return parts.join(',');
}

const file = process.argv[2];
const text = readFileSync(file, 'utf8');
// Function declarations and constructors: `name(params): ` / `constructor(params);` on one line.
const out = text.replace(/^(\s*(?:export function [\w$]+|constructor))\((.*)\)(:|;)/gm, (_, head, params, tail) => `${head}(${rewrite(params)})${tail}`);
writeFileSync(file, out);
