#!/usr/bin/env python3
"""Train, export (ONNX), verify and evaluate the wattlet seq2point NIALM models.

Input: the .npz households written by generate.py (60 s mean power, W).
Output (into OUT_DIR, normally models/): <appliance>.onnx, <appliance>.json, metrics.json.

Per appliance: a small 1-D CNN maps a window of 99 aggregate samples (99 min), normalised as
(x - AGG_MEAN) / AGG_STD with constants from the training houses, to the appliance's power at the
window midpoint (index 49) divided by OUT_SCALE. Runtime: watts = max(0, y * OUT_SCALE).

Usage: train.py DATA_DIR OUT_DIR [--appliances kettle,fridge] [--epochs N]
"""
import argparse
import hashlib
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
THREADS = int(os.environ.get("NIALM_THREADS", "2"))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.config.threading.set_intra_op_parallelism_threads(THREADS)
tf.config.threading.set_inter_op_parallelism_threads(1)

import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import tf2onnx  # noqa: E402

WINDOW = 99
MID = WINDOW // 2
SEED = 20240601
OPSET = 13
TRAIN_HOUSES = ["h01", "h02", "h03", "h04", "h05", "h06", "h07", "h08"]
VAL_HOUSES = ["h09"]  # early stopping only
TEST_HOUSES = ["h10", "h11", "h12"]  # held out: never seen in training or model selection
if os.environ.get("NIALM_SPLIT"):  # smoke tests only: "h01,h02|h03|h04" = train|val|test
    TRAIN_HOUSES, VAL_HOUSES, TEST_HOUSES = [p.split(",") for p in os.environ["NIALM_SPLIT"].split("|")]

# appliance -> (antgen type, on/off threshold in W on the 60 s mean power, fixed a priori)
APPLIANCES = {
    "kettle": ("KETTLE", 500.0),
    "fridge": ("REFRIGERATOR", 50.0),
    "washing_machine": ("WASHINGMACHINE", 20.0),
    "dishwasher": ("DISHWASHER", 20.0),
    "microwave": ("MICROWAVE", 200.0),
}
MAX_TRAIN_WINDOWS = 80_000
BATCH = 256
LR = 1e-3


def load(data_dir, houses):
    return {h: dict(np.load(os.path.join(data_dir, f"{h}.npz"))) for h in houses}


def windows(agg):
    """All full windows of a house; row i is centred on sample i + MID."""
    return np.lib.stride_tricks.sliding_window_view(agg, WINDOW)


def build_model(width=1.0):
    """The shipped network (width 1: 42,729 parameters); `width` scales every layer's channels
    (the size curve in models/README.md)."""
    w = lambda n: max(1, round(n * width))
    inp = tf.keras.Input(shape=(WINDOW,), name="aggregate")
    x = tf.keras.layers.Reshape((WINDOW, 1))(inp)
    x = tf.keras.layers.Conv1D(w(16), 9, activation="relu")(x)               # 91
    x = tf.keras.layers.Conv1D(w(16), 5, strides=2, activation="relu")(x)    # 44
    x = tf.keras.layers.Conv1D(w(24), 5, strides=2, activation="relu")(x)    # 20
    x = tf.keras.layers.Conv1D(w(32), 3, activation="relu")(x)               # 18
    x = tf.keras.layers.Flatten()(x)
    x = tf.keras.layers.Dense(w(64), activation="relu")(x)
    out = tf.keras.layers.Dense(1, name="power")(x)
    return tf.keras.Model(inp, out)


def f1_stats(pred_w, true_w, thr):
    p, t = pred_w >= thr, true_w >= thr
    tp = int(np.sum(p & t)); fp = int(np.sum(p & ~t)); fn = int(np.sum(~p & t))
    prec = tp / (tp + fp) if tp + fp else 0.0
    rec = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    return {"f1": f1, "precision": prec, "recall": rec, "tp": tp, "fp": fp, "fn": fn}


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("out")
    ap.add_argument("--appliances", default=",".join(APPLIANCES))
    ap.add_argument("--epochs", type=int, default=6)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    tf.keras.utils.set_random_seed(SEED)
    tf.config.experimental.enable_op_determinism()

    train = load(args.data, TRAIN_HOUSES)
    val = load(args.data, VAL_HOUSES)
    test = load(args.data, TEST_HOUSES)
    manifest = json.load(open(os.path.join(args.data, "manifest.json")))

    all_train_agg = np.concatenate([train[h]["aggregate"] for h in TRAIN_HOUSES])
    agg_mean = round(float(all_train_agg.astype(np.float64).mean()), 3)
    agg_std = round(float(all_train_agg.astype(np.float64).std()), 3)
    print(f"aggregate normalisation: mean {agg_mean} W, std {agg_std} W", flush=True)

    def xs(houses):
        return {h: ((windows(d["aggregate"]) - agg_mean) / agg_std).astype(np.float32) for h, d in houses.items()}

    x_train, x_val, x_test = xs(train), xs(val), xs(test)

    metrics_path = os.path.join(args.out, "metrics.json")
    metrics = json.load(open(metrics_path)) if os.path.exists(metrics_path) else {}
    metrics.setdefault("appliances", {})
    metrics.update({
        "data": "SYNTHETIC ONLY (antgen 0.4.1 households, see README.md); not validated on real meters",
        "train_houses": TRAIN_HOUSES, "val_houses": VAL_HOUSES, "test_houses": TEST_HOUSES,
        "days_per_house": manifest[TRAIN_HOUSES[0]]["days"], "step_seconds": manifest[TRAIN_HOUSES[0]]["step_s"],
        "window": WINDOW, "aggregate_mean_w": agg_mean, "aggregate_std_w": agg_std, "seed": SEED,
        "versions": {"python": sys.version.split()[0], "tensorflow": tf.__version__, "keras": tf.keras.__version__,
                     "tf2onnx": tf2onnx.__version__, "onnx": onnx.__version__, "onnxruntime": ort.__version__,
                     "numpy": np.__version__, "onnx_opset": OPSET},
    })

    rng = np.random.default_rng(SEED)
    for name in args.appliances.split(","):
        key, thr = APPLIANCES[name]
        t0 = time.time()
        ys = {h: d[key][MID:MID + len(x_train[h])] for h, d in train.items()}
        on_any = {h: windows(d[key]).max(axis=1) >= thr for h, d in train.items()}
        X = np.concatenate([x_train[h] for h in TRAIN_HOUSES])
        Y = np.concatenate([ys[h] for h in TRAIN_HOUSES])
        A = np.concatenate([on_any[h] for h in TRAIN_HOUSES])
        on_vals = Y[Y >= thr]
        out_scale = round(float(np.percentile(on_vals.astype(np.float64), 99.5)), 1)
        # balance: every window that sees the appliance on, plus twice as many (at least 20k) others
        act_idx, idle_idx = np.flatnonzero(A), np.flatnonzero(~A)
        n_idle = min(len(idle_idx), max(2 * len(act_idx), 20_000))
        idx = np.concatenate([act_idx, rng.choice(idle_idx, n_idle, replace=False)])
        if len(idx) > MAX_TRAIN_WINDOWS:
            idx = rng.choice(idx, MAX_TRAIN_WINDOWS, replace=False)
        rng.shuffle(idx)
        Xs, Ys = X[idx], (Y[idx] / out_scale).astype(np.float32)
        del X, Y, A

        xv = np.concatenate([x_val[h] for h in VAL_HOUSES])
        yv = np.concatenate([val[h][key][MID:MID + len(x_val[h])] for h in VAL_HOUSES]) / out_scale

        tf.keras.utils.set_random_seed(SEED)
        model = build_model()
        model.compile(optimizer=tf.keras.optimizers.Adam(LR), loss="mse", metrics=["mae"])
        hist = model.fit(
            Xs, Ys, batch_size=BATCH, epochs=args.epochs, validation_data=(xv, yv.astype(np.float32)),
            callbacks=[tf.keras.callbacks.EarlyStopping(monitor="val_mae", patience=2, restore_best_weights=True)],
            verbose=2, shuffle=True,
        )
        train_s = time.time() - t0

        # export ---------------------------------------------------------------------------------
        spec = (tf.TensorSpec([None, WINDOW], tf.float32, name="aggregate"),)

        @tf.function(input_signature=spec)
        def infer(x):
            return {"power": model(x, training=False)}

        onnx_path = os.path.join(args.out, f"{name}.onnx")
        model_proto, _ = tf2onnx.convert.from_function(infer, input_signature=spec, opset=OPSET)
        model_proto.producer_name = "wattlet models/train/train.py (tf2onnx)"
        onnx.save(model_proto, onnx_path)
        onnx.checker.check_model(onnx.load(onnx_path), full_check=True)
        ops = sorted({n.op_type for n in onnx.load(onnx_path).graph.node})

        # verify: onnxruntime vs keras on held-out windows ------------------------------------------
        sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
        in_name, out_name = sess.get_inputs()[0].name, sess.get_outputs()[0].name
        xcheck = x_test[TEST_HOUSES[0]][rng.choice(len(x_test[TEST_HOUSES[0]]), 4096, replace=False)]
        k_out = model.predict(xcheck, batch_size=1024, verbose=0)
        o_out = sess.run([out_name], {in_name: xcheck})[0]
        max_diff_w = float(np.max(np.abs(k_out - o_out)) * out_scale)

        # evaluate the exported ONNX model on every window of the held-out houses -------------------
        per_house, preds, trues = {}, [], []
        for h in TEST_HOUSES:
            y_true = test[h][key][MID:MID + len(x_test[h])]
            y_pred = np.maximum(0.0, sess.run([out_name], {in_name: x_test[h]})[0][:, 0] * out_scale)
            per_house[h] = {"mae_w": float(np.mean(np.abs(y_pred - y_true))), **f1_stats(y_pred, y_true, thr)}
            preds.append(y_pred); trues.append(y_true)
        y_pred, y_true = np.concatenate(preds), np.concatenate(trues)
        res = {
            "mae_w": float(np.mean(np.abs(y_pred - y_true))),
            "mae_w_when_on": float(np.mean(np.abs(y_pred - y_true)[y_true >= thr])) if np.any(y_true >= thr) else None,
            "baseline_mae_w_always_off": float(np.mean(np.abs(y_true))),
            "on_threshold_w": thr, **f1_stats(y_pred, y_true, thr),
            "energy_true_kwh": float(y_true.sum() / 60 / 1000), "energy_pred_kwh": float(y_pred.sum() / 60 / 1000),
            "test_windows": int(len(y_true)), "on_fraction_test": float(np.mean(y_true >= thr)),
            "per_house": per_house,
            "train_windows": int(len(idx)), "epochs_run": len(hist.history["loss"]),
            "best_val_mae_w": float(min(hist.history["val_mae"]) * out_scale),
            "train_seconds": round(train_s, 1), "params": int(model.count_params()),
            "onnx_bytes": os.path.getsize(onnx_path), "onnx_ops": ops,
            "onnx_vs_keras_max_abs_diff_w": max_diff_w, "out_scale_w": out_scale,
        }
        metrics["appliances"][name] = res
        print(f"{name}: MAE {res['mae_w']:.1f} W (always-off {res['baseline_mae_w_always_off']:.1f} W), "
              f"F1 {res['f1']:.3f} @ {thr} W, {res['epochs_run']} epochs, {train_s:.0f} s, "
              f"{res['onnx_bytes']} B, onnx-keras max diff {max_diff_w:.2e} W, ops {ops}", flush=True)

        meta = {
            "appliance": name, "model": f"{name}.onnx", "sha256": sha256(onnx_path),
            "synthetic_only": True,
            "input": {"name": in_name, "shape": [None, WINDOW], "dtype": "float32", "window": WINDOW,
                      "step_seconds": 60, "units": "W (mean active power over each 60 s step)",
                      "normalisation": "x_norm = (x - mean) / std", "mean": agg_mean, "std": agg_std},
            "output": {"name": out_name, "shape": [None, 1], "position": "window midpoint (index 49 of 0..98)",
                       "scale": out_scale, "postprocess": "watts = max(0, y * scale)", "units": "W"},
            "on_threshold_w": thr, "opset": OPSET,
            "metrics_heldout_synthetic": {"mae_w": res["mae_w"], "f1": res["f1"]},
        }
        with open(os.path.join(args.out, f"{name}.json"), "w") as f:
            json.dump(meta, f, indent=2)
            f.write("\n")
        with open(metrics_path, "w") as f:
            json.dump(metrics, f, indent=2)
            f.write("\n")
        tf.keras.backend.clear_session()


if __name__ == "__main__":
    main()
