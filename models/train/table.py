#!/usr/bin/env python3
"""Prints the unseen-house tables of models/README.md from models/metrics-refit.json (stdlib only).

Usage: python3 models/train/table.py [models/metrics-refit.json]
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "metrics-refit.json")
m = json.load(open(path))
ship = m["shipped_direction"]
names = {"kettle": "kettle", "dishwasher": "dishwasher", "washing_machine": "washing machine",
         "microwave": "microwave"}


def pct(x):
    return "n/a" if x is None else f"{100 * x:+.0f} %"


print("| appliance | trained on → scored on | on threshold | MAE model | MAE predict-zero | MAE predict-mean "
      "| F1 (P / R) | energy model / true, kWh per day | energy error | on-time |")
print("|---|---|---|---|---|---|---|---|---|---|")
for app, dirs in m["results"].items():
    ship_app = ship[app] if isinstance(ship, dict) else ship
    for direction in sorted(dirs, key=lambda d: d != ship_app):
        r = dirs[direction]
        mo, z, mm = r["model"], r["predict_zero"], r["predict_mean"]
        shipped = " **(shipped)**" if direction == ship_app else ""
        print(f"| {names.get(app, app)} | house {r['train_house']} → {r['test_house']}{shipped} "
              f"| {r['on_threshold_w']:.0f} W | **{mo['mae_w']:.2f} W** | {z['mae_w']:.2f} W "
              f"| {mm['mae_w']:.2f} W ({mm['constant_w']:.1f} W) "
              f"| {mo['f1']:.2f} ({mo['precision']:.2f} / {mo['recall']:.2f}) "
              f"| {mo['kwh_per_day_pred']:.3f} / {mo['kwh_per_day_true']:.3f} | {pct(mo['energy_error'])} "
              f"| {100 * r['on_fraction_test']:.2f} % |")
print()
print("| appliance | direction | train windows (on at midpoint) | + injected | epochs | best val MAE | seconds |")
print("|---|---|---|---|---|---|---|")
for app, dirs in m["results"].items():
    for direction, r in dirs.items():
        print(f"| {names.get(app, app)} | {direction} | {r['train_windows']:,} ({r['train_on_windows']:,}) "
              f"| {r.get('injected_windows', 0):,} | {r['epochs_run']} | {r['best_val_mae_w']:.2f} W "
              f"| {r['seconds_total']:.0f} |")
if "reproduce_seconds" in m:
    print(f"\nrun.sh (REFIT part): {m['reproduce_seconds']} s")
