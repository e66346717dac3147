// Validates a .glb with the Khronos glTF validator (npm gltf-validator) and prints its report as JSON.
// Usage: node validate_gltf.mjs FILE.glb
import { readFile } from "node:fs/promises";
import validator from "gltf-validator";

const file = process.argv[2];
const data = new Uint8Array(await readFile(file));
const report = await validator.validateBytes(data, {
  uri: file, maxIssues: 200, writeTimestamp: false,
  externalResourceFunction: () => Promise.reject(new Error("external resources are not expected")),
});
process.stdout.write(JSON.stringify(report) + "\n");
