// Every entry's declarations at once, for TypeScript set-ups that do not read package.json
// `exports` (moduleResolution node10): the shared API, the web initialisers and `fileSource`.
export * from './web.js';
export { default } from './web.js';
export { fileSource } from './node.js';
