#!/usr/bin/env node
// Encodes every line of a corpus with two tokenizers that share no code with ours, for the real-tokenizer tests:
// Hugging Face's Rust tokenizers (Node binding; the reference) and the transformers.js port (@lenml/tokenizers),
// both loaded from the same tokenizer.json / tokenizer_config.json.
//
//   NODE_PATH=<cache>/node_modules node encode.js <model dir> <corpus.json> <out.json>
//
// corpus.json: a JSON array of strings. out.json: {"rust": [{ids, decoded}], "transformersJs": [{ids} | {error}]},
// one entry per line, in order. No special tokens are added (BOS/EOS), and decoding keeps them.
"use strict";
const fs = require("fs");
const path = require("path");

async function main() {
  const [modelDir, corpusPath, outPath] = process.argv.slice(2);
  if (!modelDir || !corpusPath || !outPath) {
    console.error("usage: encode.js <model dir> <corpus.json> <out.json>");
    process.exit(2);
  }
  const lines = JSON.parse(fs.readFileSync(corpusPath, "utf8"));

  const { Tokenizer } = require("tokenizers");
  const rust = Tokenizer.fromFile(path.join(modelDir, "tokenizer.json"));
  const rustResults = [];
  for (const line of lines) {
    const encoding = await rust.encode(line, null, { addSpecialTokens: false });
    const ids = Array.from(encoding.getIds());
    const decoded = await rust.decode(ids, false);
    rustResults.push({ ids, decoded });
  }

  const { TokenizerLoader } = require("@lenml/tokenizers");
  const js = TokenizerLoader.fromPreTrained({
    tokenizerJSON: JSON.parse(fs.readFileSync(path.join(modelDir, "tokenizer.json"), "utf8")),
    tokenizerConfig: JSON.parse(fs.readFileSync(path.join(modelDir, "tokenizer_config.json"), "utf8")),
  });
  const jsResults = lines.map((line) => {
    try {
      return { ids: Array.from(js.encode(line, { add_special_tokens: false })) };
    } catch (e) {
      return { error: String(e) };
    }
  });

  fs.writeFileSync(outPath, JSON.stringify({ rust: rustResults, transformersJs: jsResults }));
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : String(e));
  process.exit(1);
});
