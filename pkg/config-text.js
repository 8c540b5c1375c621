// Config fields given as text (CLI flags, URL query parameters): names in kebab-case or
// camelCase, values converted to the type the field has in the resolved default config.
// Shared by cli.js and http.js; validation itself stays in the library (resolveConfig).

/** `group-size` / `groupSize` → `groupSize`; `bits` → `bitWidth`. */
export function configField(name) {
  return name === 'bits' ? 'bitWidth' : name.replace(/-([a-z])/g, (_, c) => c.toUpperCase());
}

const BOOL = { on: true, true: true, yes: true, 1: true, off: false, false: false, no: false, 0: false };

/** Whether `field` is a boolean field of `defaults` (a resolved config). */
export const isBooleanField = (field, defaults) => typeof defaults[field] === 'boolean';

/** A boolean word (on/off, true/false, yes/no, 1/0), or undefined. */
export const booleanWord = (text) => BOOL[String(text).toLowerCase()];

/**
 * Convert `text` for `field`. Unknown fields and unparsable values are passed through as text so
 * that resolveConfig reports them with the field name.
 */
export function configValue(field, text, defaults) {
  // targetSizeMb defaults to null (no budget) but takes a number.
  const kind = field === 'profile' ? 'string' : field === 'targetSizeMb' ? 'number' : typeof defaults[field];
  if (kind === 'boolean') return booleanWord(text) ?? text;
  if (kind === 'number') return text.trim() !== '' && !Number.isNaN(Number(text)) ? Number(text) : text;
  if (field === 'sensitiveLayerPatterns') return text.split(',').map((s) => s.trim()).filter(Boolean);
  if (field === 'layerBitWidths') {
    return Object.fromEntries(
      text.split(',').filter(Boolean).map((entry) => {
        const at = entry.lastIndexOf('=');
        if (at < 0) throw Object.assign(new Error(`layerBitWidths entries are glob=bits, got '${entry}'`), { code: 'E_CONFIG', field: 'layerBitWidths' });
        return [entry.slice(0, at).trim(), Number(entry.slice(at + 1))];
      }),
    );
  }
  return text;
}
