#!/usr/bin/env node
// Times Hugging Face's Rust tokenizer (Node binding) encoding one text, for the tokenizer benchmark, which runs
// this beside our own encoder in the same process run:
//
//   RAYON_NUM_THREADS=1 NODE_PATH=<cache>/node_modules node bench.js <model dir> <text file> <repeats>
//
// Prints one JSON object: {"tokens": n, "seconds": [one per timed encode]}. Two encodes warm up first.
// A single encode call is single-threaded in the Rust library (only batches use its thread pool).
"use strict";
const fs = require("fs");
const path = require("path");

async function main() {
  const [modelDir, textPath, repeatsArg] = process.argv.slice(2);
  const repeats = Number(repeatsArg || "5");
  if (!modelDir || !textPath || !(repeats > 0)) {
    console.error("usage: bench.js <model dir> <text file> <repeats>");
    process.exit(2);
  }
  const { Tokenizer } = require("tokenizers");
  const tokenizer = Tokenizer.fromFile(path.join(modelDir, "tokenizer.json"));
  const text = fs.readFileSync(textPath, "utf8");
  let tokens = 0;
  for (let i = 0; i < 2; i++) tokens = (await tokenizer.encode(text, null, { addSpecialTokens: false })).getIds().length;
  const seconds = [];
  for (let i = 0; i < repeats; i++) {
    const start = process.hrtime.bigint();
    const encoding = await tokenizer.encode(text, null, { addSpecialTokens: false });
    const ids = encoding.getIds();
    seconds.push(Number(process.hrtime.bigint() - start) / 1e9);
    if (ids.length !== tokens) throw new Error(`token count changed: ${ids.length} vs ${tokens}`);
  }
  console.log(JSON.stringify({ tokens, seconds }));
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : String(e));
  process.exit(1);
});
