// A helper Worker started by worker.js: reads Blob/File byte ranges and transfers them back.
// In Chromium a Blob read makes progress only when the reading thread's event loop runs, so a
// read started by the quantizing Worker waits while wasm is busy; read here, on a thread of its
// own, the next tensors arrive while the current ones are quantized (bench/threads.mjs measures
// it: "reading the File").
self.onmessage = async ({ data: { id, blob, start, end } }) => {
  try {
    const buffer = await blob.slice(start, end).arrayBuffer();
    postMessage({ id, buffer }, [buffer]);
  } catch (e) {
    postMessage({ id, error: { name: e?.name ?? 'Error', message: String(e?.message ?? e) } });
  }
};
