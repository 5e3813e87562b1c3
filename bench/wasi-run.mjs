// Runs a wasm32-wasip1 build of benches/driver.rs under Node's WASI, i.e. in V8, and prints
// the wall time of the run (compilation excluded) on stderr; see bench/README.md.
import { readFile } from 'node:fs/promises';
import { WASI } from 'node:wasi';
import { argv, hrtime } from 'node:process';
const [wasmPath, ...args] = argv.slice(2);
const wasi = new WASI({ version: 'preview1', args: [wasmPath, ...args], env: {}, preopens: {} });
const module = await WebAssembly.compile(await readFile(wasmPath));
const imports = wasi.getImportObject();
for (const imp of WebAssembly.Module.imports(module)) {
  if (imp.kind === 'function' && !(imports[imp.module] && imports[imp.module][imp.name])) {
    imports[imp.module] ??= {};
    imports[imp.module][imp.name] = () => 0; // host calls the driver never makes
  }
}
const instance = await WebAssembly.instantiate(module, imports);
const t0 = hrtime.bigint();
wasi.start({ exports: { memory: instance.exports.memory, _start: instance.exports._start } });
const t1 = hrtime.bigint();
console.error(`wall_ms=${Number(t1 - t0) / 1e6}`);
