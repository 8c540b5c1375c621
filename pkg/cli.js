#!/usr/bin/env node
// arrowquant command line: quantize / inspect / dequantize / convert, all through the wasm package.
import { closeSync, mkdirSync, openSync, readFileSync, readSync, renameSync, rmSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { buildInfo, configField, configFields, configFromText, fileSource, openGgufSource, openQuantizedSource, quantizeGguf, quantizeStream } from './node.js';

const USAGE = `arrowquant ${buildInfo().version} — quantize safetensors weights to 2/4/8-bit Parquet or GGUF

usage:
  arrowquant quantize <model.safetensors> -o <out.parquet> [--profile edge|local|cloud|base] [config flags]
                      [--calibration stats.safetensors] [--json] [--quiet]
  arrowquant quantize <model.safetensors> -o <out.gguf> [--gguf-type Q8_0|Q6_K|Q5_K_M|Q5_K_S|Q5_1|Q5_0|Q4_K_M|Q4_K_S|Q4_1|Q4_0|Q3_K_L|Q3_K_M|Q3_K_S|Q2_K|F16|BF16|F32]
                      [--calibration stats.safetensors] [--layer-bit-widths 'glob=bits,…'] [--target-size-mb X]
                      [--gptq auto|on|off] [--gptq-damp X] [--gptq-act-order on|off]
  arrowquant inspect <file.parquet|file.gguf> [--json]
  arrowquant dequantize <file.parquet|file.gguf> -o <out.safetensors> [--dtype f32|f16]
  arrowquant convert <file.gguf> -o <out.parquet>   |   convert <file.parquet> -o <out.gguf>
                      (re-containering: every value decodes to the same bits; what has no exact
                      form in the other container is refused, naming the tensor)

  The output format follows -o's extension (.gguf: GGUF, docs/GGUF.md; else Parquet); --gguf-type
  chooses the GGUF type (default Q8_0). Of the config flags, GGUF output takes
  --layer-bit-widths (2/4/8/16 → Q2_K, the mix's 4-bit type, Q8_0, F16), --target-size-mb and,
  with a calibration that has Gram matrices, --gptq/--gptq-damp/--gptq-act-order.

config flags (one per config field, kebab-case; see README):
  --bits/--bit-width 2|4|8   --group-size 32|64|128|256   --scale-search auto|on|off
  --min-accuracy X (0 disables fallback)   --fail-fast   --modality text|code|image|audio
  --num-time-groups N   --enable-time-aware on|off   --enable-spatial on|off   --calibration-samples N
  --skip-sensitive-layers on|off   --sensitive-bits 8|16   --sensitive-layer-patterns 'glob,glob'
  --layer-bit-widths 'glob=bits,…'   --target-size-mb X (plan per-layer widths to fit X MiB)
  --time-grouping uniform|adaptive   --time-smoothing 0..1   --activation-bits 4|8   --spatial-alpha 0..1|search
  --gptq auto|on|off   --gptq-act-order on|off   --importance auto|on|off   --match-gain auto|on|off
  --codec groups|ggml|auto (codes in groups, or ggml's Q2_K/Q4_K/Q8_0 blocks)

  --calibration: activation statistics (docs/CALIBRATION.md, made by tools/calibrate.py) that
  enable time-aware activation params and channel equalization; for GGUF, the importance that
  weights the block searches (as llama.cpp's imatrix).
`;

class UsageError extends Error {
  constructor(message) {
    super(message);
    this.code = 'E_USAGE';
  }
}


/** The CLI's own flags (config flags come from `configFields()`). */
const OWN_FLAGS = ['output', 'json', 'quiet', 'help', 'version', 'dtype', 'calibration', 'gguf-type'];

/** Edit distance (insertions, deletions, substitutions) between two short strings. */
function distance(a, b) {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) row[j] = Math.min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = row;
  }
  return prev[b.length];
}

/** The known flag closest to a mistyped one (within a third of its length), if any. */
function closestFlag(name) {
  const kebab = (n) => n.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
  const known = [...OWN_FLAGS, ...configFields().flatMap((f) => [f.name, ...f.aliases].map(kebab))];
  const scored = known.map((k) => [distance(name.toLowerCase(), k), k]).sort((a, b) => a[0] - b[0]);
  return scored.length && scored[0][0] <= Math.max(1, Math.floor(name.length / 3)) ? scored[0][1] : null;
}

/**
 * Split argv into positionals, the CLI's own flags, and config flags. Config flags become text
 * pairs that the library turns into the config (`configFromText`); a bare boolean flag means on,
 * and an on/off word after it is taken as its value.
 */
function parseArgs(argv) {
  const positional = [];
  const flags = {};
  const pairs = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith('-') || arg === '-') {
      positional.push(arg);
      continue;
    }
    let [name, inline] = arg.replace(/^--?/, '').split(/=(.*)/s, 2);
    const next = () => {
      if (inline !== undefined) return inline;
      if (i + 1 >= argv.length) throw new UsageError(`--${name} needs a value`);
      return argv[++i];
    };
    if (name === 'o' || name === 'output') flags.output = next();
    else if (name === 'json' || name === 'quiet' || name === 'help' || name === 'h' || name === 'version') flags[name] = true;
    else if (name === 'dtype') flags.dtype = next();
    else if (name === 'calibration') flags.calibration = next();
    else if (name === 'gguf-type') flags.ggufType = next();
    else {
      const field = configField(name);
      if (!field) {
        const guess = closestFlag(name);
        throw new UsageError(`unknown flag --${name}${guess ? ` (did you mean --${guess}?)` : ''}`);
      } else if (field.kind === 'boolean') {
        const isWord = (text) => text !== undefined && typeof configFromText([[name, text]])[field.name] === 'boolean';
        pairs.push([name, inline ?? (isWord(argv[i + 1]) && argv[i + 1] !== '' ? argv[++i] : '')]);
      } else {
        pairs.push([name, next()]);
      }
    }
  }
  return { positional, flags, config: configFromText(pairs) };
}

const fmt = (v, d = 4) => (v === null || v === undefined ? '—' : v === Infinity ? '∞' : v.toFixed(d));
const mib = (n) => `${(n / 1048576).toFixed(2)} MiB`;

function table(rows, columns) {
  const widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => String(r[c]).length)));
  const line = (cells) => cells.map((c, i) => String(c).padEnd(widths[i])).join('  ').trimEnd();
  return [line(columns), line(widths.map((w) => '-'.repeat(w))), ...rows.map((r) => line(columns.map((c) => r[c])))].join('\n');
}

function layerRows(layers) {
  return layers.map((l) => ({
    tensor: l.name,
    shape: `[${l.shape.join(',')}]`,
    dtype: l.dtype,
    stored: l.stored,
    cosine: fmt(l.cosine, 5),
    'snr dB': fmt(l.snrDb, 2),
    why: l.reason,
  }));
}

function printSummary(r) {
  const c = r.layerCounts;
  console.log(`
model: ${r.layers.length} tensors, ${r.paramsTotal.toLocaleString('en-US')} params (${r.paramsQuantized.toLocaleString('en-US')} quantized), modality ${r.modality} (${r.modalitySource})
config: profile ${r.profile}, ${r.bitWidth}-bit, group ${r.groupSize}
layers: int2 ${c.bits2}, int4 ${c.bits4}, int8 ${c.bits8}, f16 ${c.f16}, raw ${c.raw}
size: ${mib(r.sourceBytes)} of tensors → ${mib(r.outputBytes)} Parquet, compression ${r.compressionRatio.toFixed(2)}×
quality: cosine ${fmt(r.cosineSimilarity, 5)} (param-weighted; min ${fmt(r.minCosine, 5)} at ${r.minCosineLayer ?? '—'}), SNR ${fmt(r.snrDb, 2)} dB
modality rule: ${r.modalityRule}
time-aware: ${r.timeAware.requested ? r.timeAware.note : 'off'}
spatial: ${r.spatial.requested ? r.spatial.note : 'off'}${r.sizePlan ? `\nsize plan: target ${mib(r.sizePlan.targetBytes)}, planned ≤ ${mib(r.sizePlan.plannedBytes)} (all at ${r.bitWidth} bits: ${mib(r.sizePlan.uniformBytes)}; smallest: ${mib(r.sizePlan.minimumBytes)})` : ''}
time: ${r.quantizationTimeS.toFixed(2)} s`);
  for (const w of r.warnings ?? []) console.log(`warning [${w.code}]: ${w.message}`);
}

/**
 * Write a file through `fill(put)` into a temporary file beside `output`, renamed into place
 * only when `fill` succeeds: a failed run never leaves a partial output behind.
 */
async function writeAtomically(output, fill) {
  mkdirSync(dirname(output), { recursive: true });
  const tmp = join(dirname(output), `.${basename(output)}.${process.pid}.tmp`);
  let fd;
  // Interrupted (Ctrl-C, kill): no temporary file is left behind either. The handlers are in
  // place before the file exists: without one, a signal ends the process where it stands.
  const onSignal = (signal) => {
    try { if (fd !== undefined) closeSync(fd); } catch {}
    rmSync(tmp, { force: true });
    console.error(`\narrowquant: ${signal}: stopped, nothing written`);
    process.exit(signal === 'SIGINT' ? 130 : 143);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const put = (bytes) => {
    let at = 0;
    while (at < bytes.length) at += writeSync(fd, bytes, at);
  };
  try {
    fd = openSync(tmp, 'w');
    const result = await fill(put);
    closeSync(fd);
    renameSync(tmp, output);
    return result;
  } catch (e) {
    try { closeSync(fd); } catch {}
    rmSync(tmp, { force: true });
    throw e;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

function progressBar(p) {
  const width = 30;
  const frac = p.bytesTotal ? p.bytesDone / p.bytesTotal : p.done / p.total;
  const fill = Math.round(frac * width);
  const name = p.name.length > 40 ? '…' + p.name.slice(-39) : p.name;
  process.stderr.write(`\r[${'#'.repeat(fill)}${' '.repeat(width - fill)}] ${p.done}/${p.total} ${(frac * 100).toFixed(0).padStart(3)}% ${name.padEnd(40)}`);
}

const isGguf = (path) => /\.gguf$/i.test(path);
const LAYER_COLUMNS = ['tensor', 'shape', 'dtype', 'stored', 'cosine', 'snr dB', 'why'];

/**
 * Quantize `input` (read tensor by tensor) into `output` (written atomically) through
 * `write(source, put, onProgress)`, then print the report with `print` (or as JSON).
 */
async function quantizeFile(input, output, flags, write, print) {
  const source = fileSource(input);
  const showBar = process.stderr.isTTY && !flags.json && !flags.quiet;
  let report;
  try {
    ({ report } = await writeAtomically(output, (put) => write(source, put, showBar ? progressBar : undefined)));
  } finally {
    source.close();
    if (showBar) process.stderr.write('\n');
  }
  if (flags.json) {
    console.log(JSON.stringify({ output, ...report }, null, 2));
  } else if (!flags.quiet) {
    print(report);
    console.log(`wrote ${output}`);
  }
}

function printGgufReport(report) {
  console.log(table(layerRows(report.layers.map((l) => ({ ...l, stored: l.ggmlType }))), LAYER_COLUMNS));
  const counts = {};
  for (const l of report.layers) counts[l.ggmlType] = (counts[l.ggmlType] ?? 0) + 1;
  console.log(`
model: ${report.layers.length} tensors, ${report.paramsTotal.toLocaleString('en-US')} params, architecture ${report.architecture} (${report.architectureRule})
types: ${Object.entries(counts).map(([t, n]) => `${t} ×${n}`).join(', ')}
size: ${mib(report.sourceBytes)} → ${mib(report.outputBytes)} (${report.compressionRatio.toFixed(2)}×)
quality: SNR ${fmt(report.snrDb, 2)} dB pooled; min cosine ${fmt(report.minCosine, 5)}${report.minCosineLayer ? ` (${report.minCosineLayer})` : ''}`);
  const cal = report.calibration;
  if (cal) {
    const missing = cal.withoutStatistics.length ? `; no statistics for ${cal.withoutStatistics.length}: ${cal.withoutStatistics.slice(0, 3).join(', ')}${cal.withoutStatistics.length > 3 ? ', …' : ''}` : '';
    const output = cal.outputSnrDb == null ? '' : `; layer-output SNR ${fmt(cal.outputSnrDb, 2)} dB (mean over them, from the inputs' second moments)`;
    console.log(`calibration: ${cal.weighted} block-quantized tensor(s) searched with importance weights${output}${missing}`);
  }
  for (const w of report.warnings) console.log(`warning: ${w.message}`);
}

async function quantize({ positional, flags, config }) {
  const [input] = positional;
  if (!input) throw new UsageError('quantize needs an input .safetensors file');
  if (!flags.output) throw new UsageError('quantize needs -o <out.parquet|out.gguf>');
  const output = flags.output;
  if (isGguf(output) || flags.ggufType) {
    if (!isGguf(output)) throw new UsageError('--gguf-type writes GGUF: name the output *.gguf');
    const { layerBitWidths, targetSizeMb, gptq, gptqDamp, gptqActOrder, ...parquetOnly } = config;
    const given = Object.keys(parquetOnly);
    const kebab = (name) => name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
    if (given.length) throw new UsageError(`--${kebab(given[0])} applies to Parquet output; GGUF output takes --gguf-type, --layer-bit-widths, --target-size-mb, --calibration and --gptq/--gptq-damp/--gptq-act-order`);
    const ggmlType = flags.ggufType ?? 'Q8_0';
    const calibration = flags.calibration ? readFileSync(flags.calibration) : undefined;
    const options = { calibration, layerBitWidths, targetSizeMb, gptq, gptqDamp, gptqActOrder };
    return quantizeFile(input, output, flags, (source, put, onProgress) => quantizeGguf(source, ggmlType, { ...options, onChunk: put, onProgress }), printGgufReport);
  }
  const calibration = flags.calibration ? readFileSync(flags.calibration) : undefined;
  return quantizeFile(
    input,
    output,
    flags,
    (source, put, onProgress) => quantizeStream(source, config, { onChunk: put, onProgress, calibration }),
    (report) => {
      console.log(table(layerRows(report.layers), LAYER_COLUMNS));
      printSummary(report);
    },
  );
}

/** Whether the file starts with GGUF's magic (whatever its name). */
function startsWithGguf(path) {
  const fd = openSync(path, 'r');
  try {
    const head = Buffer.alloc(4);
    return readSync(fd, head, 0, 4, 0) === 4 && head.toString('latin1') === 'GGUF';
  } finally {
    closeSync(fd);
  }
}

/**
 * `use(file)` with the file opened by range through `open` (`openGgufSource`: the header, then
 * tensors as they are read; `openQuantizedSource`: the footer, then one checked pass over its row
 * groups): never read whole, whatever its size.
 */
async function withFile(input, open, use) {
  const source = fileSource(input);
  try {
    const file = await open(source);
    try {
      return await use(file);
    } finally {
      file.free();
    }
  } finally {
    source.close();
  }
}
const withGgufFile = (input, use) => withFile(input, openGgufSource, use);
const withParquetFile = (input, use) => withFile(input, openQuantizedSource, use);

async function inspectGguf(input, flags) {
  await withGgufFile(input, (file) => {
    const metadata = file.metadata();
    const tensors = file.tensors().map(({ name, shape, ggmlType, bytes }) => ({ name, shape, ggmlType, bytes }));
    if (flags.json) {
      console.log(JSON.stringify({ file: input, metadata, tensors }, null, 2));
      return;
    }
    console.log(`${input}: GGUF, architecture ${metadata['general.architecture'] ?? '—'}, ${tensors.length} tensors`);
    for (const [k, v] of Object.entries(metadata)) if (typeof v !== 'object') console.log(`  ${k} = ${v}`);
    console.log(table(
      tensors.map((t) => ({ tensor: t.name, shape: `[${t.shape.join(',')}]`, type: t.ggmlType, bytes: t.bytes })),
      ['tensor', 'shape', 'type', 'bytes'],
    ));
  });
}

async function inspect({ positional, flags }) {
  const [input] = positional;
  if (!input) throw new UsageError('inspect needs a .parquet or .gguf file');
  if (startsWithGguf(input)) return await inspectGguf(input, flags);
  await withParquetFile(input, (file) => {
    const meta = file.metadata();
    const tensors = file.tensors();
    if (flags.json) {
      console.log(JSON.stringify({ file: input, ...meta, tensors }, null, 2));
      return;
    }
    console.log(`${input}: arrowquant format ${meta.formatVersion}, written by arrowquant ${meta.libraryVersion}, modality ${meta.modality}`);
    console.log(`config: ${JSON.stringify(meta.config)}`);
    console.log(table(
      tensors.map((t) => ({
        tensor: t.name,
        shape: `[${t.shape.join(',')}]`,
        dtype: t.dtype,
        stored: t.stored,
        bytes: t.storedBytes,
        cosine: fmt(t.cosine, 5),
        'snr dB': fmt(t.snrDb, 2),
        'time groups': t.timeGroups ? t.timeGroups.length : '—',
        'equalized (α)': t.spatial ? t.spatial.alpha : '—',
      })),
      ['tensor', 'shape', 'dtype', 'stored', 'bytes', 'cosine', 'snr dB', 'time groups', 'equalized (α)'],
    ));
    if (meta.calibration) console.log(`calibration: ${meta.calibration.timesteps.length} timesteps (${meta.calibration.timesteps.slice(0, 3).join(', ')}, …), ${meta.calibration.timeGrouping} time groups, ${meta.calibration.activationBits}-bit activations`);
  });
}

async function dequantize({ positional, flags }) {
  const [input] = positional;
  if (!input) throw new UsageError('dequantize needs a .parquet or .gguf file');
  if (!flags.output) throw new UsageError('dequantize needs -o <out.safetensors>');
  const dtype = flags.dtype ?? 'f32';
  if (startsWithGguf(input)) {
    await withGgufFile(input, (file) => writeAtomically(flags.output, (put) => file.toSafetensors(dtype, { onChunk: put })));
    if (!flags.json) console.log(`wrote ${flags.output} (${dtype})`);
    return;
  }
  await withParquetFile(input, (file) => writeAtomically(flags.output, (put) => file.toSafetensors(dtype, { onChunk: put })));
  if (!flags.json) console.log(`wrote ${flags.output} (${dtype})`);
}

async function convert({ positional, flags, config }) {
  const [input] = positional;
  if (!input) throw new UsageError('convert needs a .gguf or .parquet file');
  if (!flags.output) throw new UsageError('convert needs -o <out.parquet|out.gguf>');
  if (Object.keys(config).length) throw new UsageError('convert takes no config flags: it re-containers, it does not quantize');
  const fromGguf = startsWithGguf(input);
  if (fromGguf === isGguf(flags.output)) {
    throw new UsageError(fromGguf ? 'convert: the input is GGUF, so the output is Parquet: name it *.parquet' : 'convert: the input is Parquet, so the output is GGUF: name it *.gguf');
  }
  let bytes = 0;
  if (fromGguf) {
    await withGgufFile(input, (file) => writeAtomically(flags.output, (put) => file.toParquet({ onChunk: (c) => { bytes += c.length; put(c); } })));
  } else {
    await withParquetFile(input, (file) => writeAtomically(flags.output, (put) => file.toGguf({ onChunk: (c) => { bytes += c.length; put(c); } })));
  }
  const format = fromGguf ? 'Parquet' : 'GGUF';
  if (flags.json) console.log(JSON.stringify({ output: flags.output, format, bytes }));
  else console.log(`wrote ${flags.output} (${format}, ${mib(bytes)}, every value as stored)`);
}

async function main(argv) {
  const [command, ...rest] = argv;
  if (!command) {
    process.stderr.write(USAGE);
    process.exitCode = 2;
    return;
  }
  if (command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(USAGE);
    return;
  }
  if (command === '--version') {
    console.log(buildInfo().version);
    return;
  }
  const args = parseArgs(rest);
  if (args.flags.help) {
    process.stdout.write(USAGE);
    return;
  }
  if (command === 'quantize') return quantize(args);
  if (command === 'inspect') return inspect(args);
  if (command === 'dequantize') return dequantize(args);
  if (command === 'convert') return convert(args);
  throw new UsageError(`unknown command '${command}'`);
}

/** Every failure as a documented code: Node's file errors (ENOENT, EISDIR, EACCES…) are E_IO. */
function documented(e) {
  if (typeof e?.code === 'string' && e.code.startsWith('E_')) return e;
  if (e?.syscall && typeof e?.code === 'string') {
    const what = { ENOENT: 'no such file', EISDIR: 'is a directory', EACCES: 'permission denied', ENOTDIR: 'not a directory' }[e.code] ?? e.code;
    return { code: 'E_IO', message: `cannot ${e.syscall} '${e.path ?? ''}': ${what}` };
  }
  return { code: 'E_INTERNAL', message: `internal error (please report it): ${e?.message ?? e}` };
}

main(process.argv.slice(2)).catch((raw) => {
  const e = documented(raw);
  const code = e.code;
  if (process.argv.includes('--json')) console.log(JSON.stringify({ error: { code, message: e.message, field: e.field, tensor: e.tensor } }));
  console.error(`arrowquant: error [${code}]: ${e.message}`);
  if (code === 'E_USAGE') console.error('run `arrowquant --help` for usage');
  process.exitCode = code === 'E_USAGE' ? 2 : 1;
});
