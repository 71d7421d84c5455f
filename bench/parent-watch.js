// Preloaded (`node --import ./bench/parent-watch.js ...`) into every process the benchmark starts,
// the engine included: if the harness dies without cleaning up (SIGKILL), its children notice that
// they were re-parented and stop by themselves (SIGTERM first, so the engine shuts down cleanly).
const parent = process.ppid;
const watch = globalThis.setInterval(() => {
  if (process.ppid === parent) return;
  globalThis.clearInterval(watch);
  process.kill(process.pid, 'SIGTERM');
  globalThis.setTimeout(() => process.exit(1), 10_000).unref();
}, 1_000);
watch.unref();
