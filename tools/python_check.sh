#!/usr/bin/env bash
# The Python package as a user gets it: a fresh virtual environment, `pip install .` (the
# release build, through maturin), the package's tests (crates/neural-style-py/tests), and
# the example notebook executed headless on the committed tiny weights. Run by .ci/run;
# needs python3 with venv and PyPI (maturin, numpy, pillow, pytest, jupyter).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
venv=${NEURAL_STYLE_PY_VENV:-$root/target/py-venv}
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
start=$(date +%s)
"$venv/bin/python" -m pip install -q .
echo "python: pip install . took $(( $(date +%s) - start )) s"
"$venv/bin/python" -m pip install -q pytest nbconvert ipykernel tqdm ipywidgets
"$venv/bin/python" -m pytest -q crates/neural-style-py/tests
# The notebook runs on a copy, so what it writes stays out of the checkout.
out=$root/target/notebook
rm -rf "$out" && mkdir -p "$out"
cp examples/notebook.ipynb "$out/"
NEURAL_STYLE_WEIGHTS=$root/crates/neural-style-testdata/fixtures/tiny_vgg19.safetensors \
NEURAL_STYLE_SIZE=96 NEURAL_STYLE_ITERATIONS=40 \
  "$venv/bin/jupyter" nbconvert --to notebook --execute --inplace \
  --ExecutePreprocessor.timeout=600 "$out/notebook.ipynb"
# Each cell ran without an error; the transfer cell showed the progress widget and the live
# preview (a display updated in place) before its result; the other cells printed theirs.
"$venv/bin/python" - "$out/notebook.ipynb" <<'PY'
import json, sys
nb = json.load(open(sys.argv[1]))
code = [c for c in nb["cells"] if c["cell_type"] == "code"]
outputs = [o for c in code for o in c["outputs"]]
errors = [o for o in outputs if o["output_type"] == "error"]
assert not errors, errors
run = next(c for c in code if "output=\"painted.png\"" in "".join(c["source"]))
kinds = [(o["output_type"], sorted(o.get("data", {}))) for o in run["outputs"]]
widget = [k for k in kinds if "application/vnd.jupyter.widget-view+json" in k[1]]
preview = [k for k in kinds if k[0] == "display_data" and "image/png" in k[1]]
result = [k for k in kinds if k[0] == "execute_result" and "image/png" in k[1]]
assert widget and preview and result, kinds
text = "".join("".join(o.get("text", "")) for o in outputs)
assert "evaluations, final loss" in text and "refused: content: a NumPy array of shape (3, 64, 64)" in text, text
print("python: the notebook ran: a progress widget, a live preview and the result; no errors")
PY
test -f "$out/painted.png"
