#!/usr/bin/env python3
"""Train and evaluate the wattlet seq2point NIALM models on real homes (REFIT houses 2 and 20).

Input: ../shared/testdata/nialm/refit/house{2,20}.csv.gz (30 s means, see its SOURCES.md); the
sha256 of each uncompressed CSV is checked against SOURCES.md's value before anything is used.
Both houses are resampled to what the product feeds the component: 60 s means on a gap-free
minute grid (a minute is the mean of the 30 s rows inside it; minutes without a row are gaps, and
no window that touches a gap is used for training or scored).

Per appliance (kettle, dishwasher, washing machine, microwave; REFIT's subset has no fridge):
  * direction "2->20": train on house 2, score on house 20 (never seen);
  * direction "20->2": train on house 20, score on house 2 (never seen).
The last VAL_FRACTION of the training house (by time) is held back for early stopping only.
Scoring runs the exported ONNX model with onnxruntime and exactly the component's
post-processing (watts = max(0, y * scale), then 0 below the model's on threshold).

The shipped model of each appliance is the one of direction SHIP[appliance] (models/README.md
says how it was chosen); it is written to OUT_DIR/<appliance>.onnx|json. Every direction's
figures go to OUT_DIR/metrics-refit.json.

Usage: train_refit.py REFIT_DIR OUT_DIR [--appliances kettle,...] [--epochs N]
"""
import argparse
import gzip
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np

from train import MID, OPSET, SEED, WINDOW, build_model, f1_stats, sha256  # also sets TF threads

import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf2onnx  # noqa: E402

THREADS = int(os.environ.get("NIALM_THREADS", "2"))
# Another seed (NIALM_SEED) shows how much of a score is the draw, another width (NIALM_WIDTH,
# every layer's channels scaled) what a larger model would give (models/README.md).
SEED = int(os.environ.get("NIALM_SEED", SEED))
WIDTH = float(os.environ.get("NIALM_WIDTH", "1"))

# sha256 of the uncompressed CSVs, from ../shared/testdata/nialm/refit/SOURCES.md
DATA_SHA256 = {
    "2": "1b3c2c53707284090f2ec40ee32eec720670ae255faa5251334e4eafa4fabcaf",
    "20": "e9968d13ba343583e1fb33940ff4c9834508915c9fdfeeb1c3442363df6557e5",
}
# appliance -> on/off threshold in W on the 60 s mean power (the synthetic models' thresholds,
# fixed before looking at REFIT)
APPLIANCES = {"kettle": 500.0, "dishwasher": 20.0, "washing_machine": 20.0, "microwave": 200.0}
# The on threshold actually shipped is calibrated on the training house: of the a-priori
# threshold and the candidates above it, the one with the lowest MAE of the post-processed
# estimates on the held-back tail of the training house (never the unseen house). A higher
# threshold turns the model's uncertain low estimates into 0 W.
THRESHOLD_CANDIDATES = [20.0, 50.0, 100.0, 200.0, 500.0, 1000.0]
CALIBRATE = os.environ.get("NIALM_CALIBRATE", "1") == "1"
DIRECTIONS = {"2->20": ("2", "20"), "20->2": ("20", "2")}
# The direction whose model is shipped, per appliance (see models/README.md for why).
SHIP = {"kettle": "20->2", "dishwasher": "2->20", "washing_machine": "2->20", "microwave": "2->20"}
VAL_FRACTION = 0.1
MAX_TRAIN_WINDOWS = 100_000
BATCH = 256
LR = 1e-3
# Loss: "mse" (its optimum is the expected power given the window: low where "on" is unlikely,
# and the component's threshold turns that into 0 W) or "mae" (L1; with the natural weighting
# below it collapsed to a constant 0 W here). NATURAL=1 weights the sampled windows back to how
# often they occur in the house (the sampling keeps every window that sees the appliance on and
# a fraction of the others); NATURAL=0 trains on the oversampled mix, which made the dishwasher
# and washing machine models predict "on" far too often in the other house (worse than 0 W).
LOSS = os.environ.get("NIALM_LOSS", "mse")
# Mixing: this fraction of the training windows gets the other loads of another random window of
# the training house added (that window's aggregate minus the appliance, minus its own minimum so
# that the base load stays), clipped at 6000 W like the upstream data. The target is unchanged:
# the model sees the appliance among more, and more varied, other loads than one house has (the
# unseen house may be busier), and other loads without the appliance.
MIX = float(os.environ.get("NIALM_MIX", "0.5"))
NATURAL = os.environ.get("NIALM_NATURAL", "1") == "1"
# Injection: extra training windows (a fraction of the sampled ones) that are windows of the
# training house where the appliance is off, with one of its own cycles (from the training part,
# see `activations`) added at a random place and scaled by a factor drawn log-uniformly from the
# range; the target is the scaled cycle at the midpoint. One house has one appliance of each
# kind: the scaling shows the model the same cycle shapes at the powers other houses' appliances
# draw (REFIT house 2's microwave peaks at a median ~600 W in 60 s means, house 20's at ~1.3 kW).
# Per appliance, (fraction, (lowest, highest factor)); only the microwave gains from it (the
# washing machine lost: models/README.md). NIALM_INJECT="fraction,lowest,highest" overrides it
# for every appliance (experiments).
INJECT = {"microwave": (0.3, (0.5, 2.5))}
if os.environ.get("NIALM_INJECT"):
    _f, _lo, _hi = (float(v) for v in os.environ["NIALM_INJECT"].split(","))
    INJECT = {name: (_f, (_lo, _hi)) for name in APPLIANCES}
# Activations closer than this many minutes are one cycle (a washing machine pauses mid-cycle).
CYCLE_GAP = 10


def load_house(refit_dir, house):
    """The house's 60 s means on a full minute grid (NaN = no data in that minute)."""
    path = os.path.join(refit_dir, f"house{house}.csv.gz")
    with gzip.open(path, "rb") as f:
        raw = f.read()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != DATA_SHA256[house]:
        sys.exit(f"{path}: sha256 of the CSV is {digest}, SOURCES.md says {DATA_SHA256[house]}")
    lines = raw.decode("ascii").splitlines()
    header = lines[0].split(",")
    assert header[:2] == ["timestamp_utc", "mains_w"], header
    cols = [h[:-2] for h in header[1:]]  # mains, kettle, ...
    body = lines[1:]
    ts = np.array([ln[:19] for ln in body], dtype="datetime64[s]").astype(np.int64)
    vals = np.array([ln[21:].split(",") for ln in body], dtype=np.float64)
    minute = ts // 60
    first, last = int(minute.min()), int(minute.max())
    idx = minute - first
    n = last - first + 1
    count = np.bincount(idx, minlength=n)
    out = {"first_minute": first, "rows": len(body), "sha256": digest}
    for j, c in enumerate(cols):
        s = np.bincount(idx, weights=vals[:, j], minlength=n)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[c] = np.where(count > 0, s / np.maximum(count, 1), np.nan).astype(np.float32)
    return out


def valid_windows(mains):
    """Start indices of the windows with no gap."""
    bad = np.isnan(mains).astype(np.int32)
    c = np.concatenate([[0], np.cumsum(bad)])
    starts = np.arange(len(mains) - WINDOW + 1)
    return starts[(c[starts + WINDOW] - c[starts]) == 0]


def activations(app, thr, stop):
    """The appliance's cycles before index `stop`: runs at or above `thr` W joined across pauses
    shorter than CYCLE_GAP minutes, none longer than half a window. Each is a float32 array of
    watts."""
    a = np.nan_to_num(app[:stop])
    on = (a >= thr).astype(np.int8)
    edges = np.diff(np.concatenate([[0], on, [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    cycles = []
    for s, e in zip(starts, ends):
        if cycles and s - cycles[-1][1] < CYCLE_GAP:
            cycles[-1][1] = e
        else:
            cycles.append([s, e])
    return [a[s:e].astype(np.float32) for s, e in cycles if e - s <= WINDOW // 2]


def inject(rng, agg_watts, app_watts, cycles, scale):
    """Adds one scaled cycle at a random offset to each row; returns new aggregate and appliance."""
    agg, app = agg_watts.copy(), app_watts.copy()
    lo, hi = np.log(scale[0]), np.log(scale[1])
    for r in range(len(agg)):
        c = cycles[rng.integers(len(cycles))] * np.float32(np.exp(rng.uniform(lo, hi)))
        # half of them over the midpoint (the target), the rest anywhere in the window
        o = MID - rng.integers(len(c)) if rng.random() < 0.5 else rng.integers(-len(c) + 1, WINDOW)
        a, b = max(o, 0), min(o + len(c), WINDOW)
        agg[r, a:b] += c[a - o:b - o]
        app[r, a:b] += c[a - o:b - o]
    return np.minimum(agg, 6000.0), app


def gather(series, starts, mean, std):
    x = np.lib.stride_tricks.sliding_window_view(series, WINDOW)[starts]
    return ((x - mean) / std).astype(np.float32)


def postprocess(y, scale, thr):
    """What the component returns: max(0, y * scale), 0 below the on threshold."""
    w = np.maximum(0.0, y.astype(np.float32) * np.float32(scale))
    return np.where(w >= thr, w, np.float32(0.0))


def score(pred, true, thr, minutes):
    days = minutes / 1440
    e_true, e_pred = float(true.sum() / 60 / 1000), float(pred.sum() / 60 / 1000)
    return {
        "mae_w": float(np.mean(np.abs(pred - true))), **f1_stats(pred, true, thr),
        "energy_true_kwh": e_true, "energy_pred_kwh": e_pred,
        "energy_error": (e_pred - e_true) / e_true if e_true else None,
        "kwh_per_day_true": e_true / days, "kwh_per_day_pred": e_pred / days,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("refit")
    ap.add_argument("out")
    ap.add_argument("--appliances", default=",".join(APPLIANCES))
    ap.add_argument("--directions", default=",".join(DIRECTIONS))
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--max-train-windows", type=int, default=MAX_TRAIN_WINDOWS)
    ap.add_argument("--no-ship", action="store_true", help="write metrics only, not the models")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    tf.config.experimental.enable_op_determinism()
    sess_opts = ort.SessionOptions()
    sess_opts.intra_op_num_threads = THREADS
    sess_opts.inter_op_num_threads = 1

    t_load = time.time()
    houses = {h: load_house(args.refit, h) for h in DATA_SHA256}
    starts = {h: valid_windows(d["mains"]) for h, d in houses.items()}
    for h, d in houses.items():
        print(f"house {h}: {d['rows']} rows of 30 s -> {np.sum(~np.isnan(d['mains']))} minutes with data, "
              f"{len(starts[h])} gap-free windows of {WINDOW} min ({time.time() - t_load:.0f} s)", flush=True)

    metrics_path = os.path.join(args.out, "metrics-refit.json")
    metrics = json.load(open(metrics_path)) if os.path.exists(metrics_path) else {}
    metrics.setdefault("results", {})
    metrics.update({
        "data": "REFIT (cleaned) houses 2 and 20, real measurements, CC BY 4.0 (see README.md)",
        "data_sha256_csv": {h: d["sha256"] for h, d in houses.items()},
        "resolution": "60 s means of the 30 s REFIT rows, gap-free windows only",
        "window": WINDOW, "seed": SEED, "width": WIDTH, "val_fraction_of_training_house": VAL_FRACTION,
        "max_train_windows": args.max_train_windows, "epochs_max": args.epochs, "loss": LOSS,
        "threshold_calibrated_on_training_house": CALIBRATE, "threshold_candidates_w": THRESHOLD_CANDIDATES,
        "natural_weighting": NATURAL, "mix_fraction": MIX,
        "inject": {name: {"fraction": f, "scale": list(r)} for name, (f, r) in INJECT.items()},
        "cycle_gap_minutes": CYCLE_GAP,
        "shipped_direction": SHIP, "threads": THREADS,
        "gap_free_windows": {h: int(len(s)) for h, s in starts.items()},
        "versions": {"python": sys.version.split()[0], "tensorflow": tf.__version__, "keras": tf.keras.__version__,
                     "tf2onnx": tf2onnx.__version__, "onnx": onnx.__version__, "onnxruntime": ort.__version__,
                     "numpy": np.__version__, "onnx_opset": OPSET},
    })

    for name in args.appliances.split(","):
        for direction in args.directions.split(","):
            thr = APPLIANCES[name]
            tr, te = DIRECTIONS[direction]
            t0 = time.time()
            rng = np.random.default_rng(SEED)
            dtr, dte = houses[tr], houses[te]
            s_all = starts[tr]
            cut = int(len(s_all) * (1 - VAL_FRACTION))
            s_fit, s_val = s_all[:cut], s_all[cut + WINDOW:]  # no window shares a minute across the cut
            agg_mean = round(float(np.nanmean(dtr["mains"][: s_fit[-1] + WINDOW].astype(np.float64))), 3)
            agg_std = round(float(np.nanstd(dtr["mains"][: s_fit[-1] + WINDOW].astype(np.float64))), 3)
            y_fit = dtr[name][s_fit + MID]
            on_vals = y_fit[y_fit >= thr]
            out_scale = round(float(np.percentile(on_vals.astype(np.float64), 99.5)), 1)
            # balance: windows that see the appliance on, plus twice as many (>= 20k) others
            app_win = np.lib.stride_tricks.sliding_window_view(np.nan_to_num(dtr[name]), WINDOW)
            act = app_win[s_fit].max(axis=1) >= thr
            act_idx, idle_idx = np.flatnonzero(act), np.flatnonzero(~act)
            n_idle = min(len(idle_idx), max(2 * len(act_idx), 20_000))
            idx = np.concatenate([act_idx, rng.choice(idle_idx, n_idle, replace=False)])
            if len(idx) > args.max_train_windows:
                idx = rng.choice(idx, args.max_train_windows, replace=False)
            rng.shuffle(idx)
            Xs = gather(dtr["mains"], s_fit[idx], agg_mean, agg_std)
            if MIX > 0:
                mixed = rng.random(len(idx)) < MIX
                donors = s_fit[rng.integers(0, len(s_fit), int(mixed.sum()))]
                other = (np.lib.stride_tricks.sliding_window_view(dtr["mains"], WINDOW)[donors]
                         - app_win[donors])
                other = np.maximum(other - other.min(axis=1, keepdims=True), 0.0)
                watts = Xs[mixed] * agg_std + agg_mean + other
                Xs[mixed] = ((np.minimum(watts, 6000.0) - agg_mean) / agg_std).astype(np.float32)
            Ys = np.minimum(y_fit[idx], out_scale) / out_scale
            n_inject = 0
            if name in INJECT:
                fraction, scale = INJECT[name]
                cycles = activations(dtr[name], thr, s_fit[-1] + WINDOW)
                n_inject = int(fraction * len(idx))
                base = s_fit[rng.choice(idle_idx, n_inject, replace=True)]
                agg_w, app_w = inject(rng, np.lib.stride_tricks.sliding_window_view(dtr["mains"], WINDOW)[base],
                                      app_win[base], cycles, scale)
                Xs = np.concatenate([Xs, ((agg_w - agg_mean) / agg_std).astype(np.float32)])
                Ys = np.concatenate([Ys, np.minimum(app_w[:, MID], out_scale) / out_scale])
            if NATURAL:  # inverse inclusion probability: idle windows were subsampled
                w_idle = len(idle_idx) / n_idle
                Ws = np.concatenate([np.where(act[idx], 1.0, w_idle), np.ones(n_inject)])
                Ws = (Ws / Ws.mean()).astype(np.float32)
            else:
                Ws = np.ones(len(Xs), np.float32)
            xv = gather(dtr["mains"], s_val, agg_mean, agg_std)
            yv = (np.minimum(dtr[name][s_val + MID], out_scale) / out_scale).astype(np.float32)

            tf.keras.utils.set_random_seed(SEED)
            model = build_model(WIDTH)
            model.compile(optimizer=tf.keras.optimizers.Adam(LR), loss=LOSS, metrics=["mae"])
            hist = model.fit(
                Xs, Ys.astype(np.float32), sample_weight=Ws, batch_size=BATCH, epochs=args.epochs,
                validation_data=(xv, yv),
                callbacks=[tf.keras.callbacks.EarlyStopping(monitor="val_mae", patience=3, restore_best_weights=True)],
                verbose=2, shuffle=True,
            )
            train_s = time.time() - t0

            spec = (tf.TensorSpec([None, WINDOW], tf.float32, name="aggregate"),)

            @tf.function(input_signature=spec)
            def infer(x):
                return {"power": model(x, training=False)}

            ship = direction == SHIP[name] and not args.no_ship
            tmpdir = tempfile.mkdtemp(prefix="wattlet-nialm-onnx.")
            onnx_path = os.path.join(args.out if ship else tmpdir, f"{name}.onnx")
            model_proto, _ = tf2onnx.convert.from_function(infer, input_signature=spec, opset=OPSET)
            model_proto.producer_name = "wattlet models/train/train_refit.py (tf2onnx)"
            onnx.save(model_proto, onnx_path)
            onnx.checker.check_model(onnx.load(onnx_path), full_check=True)
            ops = sorted({n.op_type for n in onnx.load(onnx_path).graph.node})
            sess = ort.InferenceSession(onnx_path, sess_opts, providers=["CPUExecutionProvider"])
            in_name, out_name = sess.get_inputs()[0].name, sess.get_outputs()[0].name
            xcheck = xv[rng.choice(len(xv), min(4096, len(xv)), replace=False)]
            max_diff_w = float(np.max(np.abs(model.predict(xcheck, batch_size=1024, verbose=0)
                                             - sess.run([out_name], {in_name: xcheck})[0])) * out_scale)

            prior_thr, val_mae_by_thr = thr, {}
            if CALIBRATE:
                yv_w = dtr[name][s_val + MID].astype(np.float32)
                yv_raw = sess.run([out_name], {in_name: xv})[0][:, 0]
                for cand in [c for c in THRESHOLD_CANDIDATES if c >= prior_thr]:
                    val_mae_by_thr[cand] = float(np.mean(np.abs(postprocess(yv_raw, out_scale, cand) - yv_w)))
                thr = min(val_mae_by_thr, key=lambda c: (val_mae_by_thr[c], c))

            # score on every gap-free window of the unseen house, the component's way ---------
            s_te = starts[te]
            y_true = dte[name][s_te + MID].astype(np.float32)
            preds = []
            for k in range(0, len(s_te), 65536):
                xb = gather(dte["mains"], s_te[k:k + 65536], agg_mean, agg_std)
                preds.append(sess.run([out_name], {in_name: xb})[0][:, 0])
            y_raw = np.concatenate(preds)
            y_pred = postprocess(y_raw, out_scale, thr)
            train_mean = float(np.mean(y_fit))
            res = {
                "train_house": tr, "test_house": te, "on_threshold_w": thr, "out_scale_w": out_scale,
                "on_threshold_prior_w": prior_thr, "val_mae_w_by_threshold": val_mae_by_thr,
                # for the record only: what each candidate would score on the unseen house (the
                # threshold is never chosen from these)
                "unseen_mae_w_by_threshold": {
                    c: float(np.mean(np.abs(postprocess(y_raw, out_scale, c) - y_true))) for c in val_mae_by_thr},
                "aggregate_mean_w": agg_mean, "aggregate_std_w": agg_std,
                "model": score(y_pred, y_true, thr, len(y_true)),
                "predict_zero": score(np.zeros_like(y_true), y_true, thr, len(y_true)),
                "predict_mean": {**score(np.full_like(y_true, train_mean), y_true, thr, len(y_true)),
                                 "constant_w": train_mean},
                "test_minutes": int(len(y_true)), "on_fraction_test": float(np.mean(y_true >= thr)),
                "train_windows": int(len(idx)), "injected_windows": n_inject, "train_on_windows": int(np.sum(y_fit[idx] >= thr)),
                "val_windows": int(len(s_val)), "epochs_run": len(hist.history["loss"]),
                "best_val_mae_w": float(min(hist.history["val_mae"]) * out_scale),
                "train_seconds": round(train_s, 1), "params": int(model.count_params()),
                "onnx_bytes": os.path.getsize(onnx_path), "onnx_ops": ops,
                "onnx_vs_keras_max_abs_diff_w": max_diff_w,
                "seconds_total": round(time.time() - t0, 1),
            }
            metrics["results"].setdefault(name, {})[direction] = res
            m, z, mm = res["model"], res["predict_zero"], res["predict_mean"]
            print(f"{name} {direction}: MAE {m['mae_w']:.2f} W (zero {z['mae_w']:.2f}, mean {mm['mae_w']:.2f}), "
                  f"F1 {m['f1']:.3f} (P {m['precision']:.2f} R {m['recall']:.2f}) @ {thr} W, energy "
                  f"{m['energy_pred_kwh']:.1f}/{m['energy_true_kwh']:.1f} kWh ({100 * m['energy_error']:+.0f} %), "
                  f"{res['epochs_run']} epochs, {res['seconds_total']:.0f} s", flush=True)

            if ship:
                meta = {
                    "appliance": name, "model": f"{name}.onnx", "sha256": sha256(onnx_path),
                    "synthetic_only": False,
                    "trained_on": f"REFIT house {tr} (real, 60 s means); scored on unseen REFIT house {te}",
                    "input": {"name": in_name, "shape": [None, WINDOW], "dtype": "float32", "window": WINDOW,
                              "step_seconds": 60, "units": "W (mean active power over each 60 s step)",
                              "normalisation": "x_norm = (x - mean) / std", "mean": agg_mean, "std": agg_std},
                    "output": {"name": out_name, "shape": [None, 1],
                               "position": f"window midpoint (index {MID} of 0..{WINDOW - 1})",
                               "scale": out_scale,
                               "postprocess": "watts = max(0, y * scale); 0 if watts < on_threshold_w",
                               "units": "W"},
                    "on_threshold_w": thr, "opset": OPSET,
                    "metrics_unseen_house": {"house": te, "mae_w": m["mae_w"], "f1": m["f1"],
                                             "energy_error": m["energy_error"],
                                             "predict_zero_mae_w": z["mae_w"]},
                }
                with open(os.path.join(args.out, f"{name}.json"), "w") as f:
                    json.dump(meta, f, indent=2)
                    f.write("\n")
            with open(metrics_path, "w") as f:
                json.dump(metrics, f, indent=2)
                f.write("\n")
            shutil.rmtree(tmpdir, ignore_errors=True)
            tf.keras.backend.clear_session()


if __name__ == "__main__":
    main()
