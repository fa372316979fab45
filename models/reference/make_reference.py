#!/usr/bin/env python3
"""Reference outputs of the NIALM models under onnxruntime, for the Rust tests of wattlet-nialm.

For every model, feeds one deterministic synthetic aggregate of 200 samples (no RNG) through the
exported ONNX model exactly as the runtime does (components/nialm/src/lib.rs):

    x(i) = 120 + 80 sin(2 pi i / 45) + 150 [i mod 25 < 10] + 2000 [i mod 60 in {20, 21, 22}]
           + 1800 [110 <= i mod 200 < 130]                      (W, f64, then rounded to f32)
    window j = x[j .. j + 99], normalised (x - mean) / std in float32
    watts    = y * scale, 0 where below the model's on_threshold_w (float32)

and writes models/reference/<appliance>.json with the input, the raw model output and the watts.
`synthetic_aggregate` in the Rust crate computes the same formula; the Rust test checks that its
input equals the stored one.

Run with onnxruntime and numpy installed (any venv):
    python3 models/reference/make_reference.py
"""

import json
import math
import pathlib

import numpy as np
import onnxruntime as ort

MODELS = pathlib.Path(__file__).resolve().parent.parent
APPLIANCES = ["kettle", "fridge", "washing_machine", "dishwasher", "microwave"]
LENGTH = 200


def synthetic_aggregate(length):
    out = []
    for i in range(length):
        x = 120.0 + 80.0 * math.sin(2.0 * math.pi * i / 45.0)
        if i % 25 < 10:
            x += 150.0
        if 20 <= i % 60 < 23:
            x += 2000.0
        if 110 <= i % 200 < 130:
            x += 1800.0
        out.append(x)
    return np.array(out, dtype=np.float32)


def main():
    aggregate = synthetic_aggregate(LENGTH)
    for appliance in APPLIANCES:
        meta = json.loads((MODELS / f"{appliance}.json").read_text())
        window = meta["input"]["window"]
        mean = np.float32(meta["input"]["mean"])
        std = np.float32(meta["input"]["std"])
        scale = np.float32(meta["output"]["scale"])
        normalised = (aggregate - mean) / std
        windows = np.stack([normalised[j : j + window] for j in range(LENGTH - window + 1)])
        session = ort.InferenceSession(
            str(MODELS / f"{appliance}.onnx"), providers=["CPUExecutionProvider"]
        )
        (y,) = session.run(None, {meta["input"]["name"]: windows.astype(np.float32)})
        y = y.reshape(-1).astype(np.float32)
        watts = y * scale
        watts = np.where(watts >= np.float32(meta["on_threshold_w"]), watts, np.float32(0))
        reference = {
            "appliance": appliance,
            "formula": "x(i) = 120 + 80 sin(2 pi i / 45) + 150 [i mod 25 < 10] "
            "+ 2000 [i mod 60 in {20,21,22}] + 1800 [110 <= i mod 200 < 130], f32",
            "onnxruntime": ort.__version__,
            "numpy": np.__version__,
            "window": window,
            "input": [float(v) for v in aggregate],
            "raw_output": [float(v) for v in y],
            "watts": [float(v) for v in watts],
        }
        path = MODELS / "reference" / f"{appliance}.json"
        path.write_text(json.dumps(reference, indent=1) + "\n")
        on = int((watts >= meta["on_threshold_w"]).sum())
        print(f"{path.name}: {len(watts)} outputs, max {watts.max():.1f} W, {on} on")


if __name__ == "__main__":
    main()
