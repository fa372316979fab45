#!/usr/bin/env python3
"""Generate synthetic households with antgen (PyPI `antgen` 0.4.1) for the wattlet NIALM models.

Runs in its own venv (antgen needs pandas<2, numpy<2). This is a thin driver around antgen's own
classes (UserModel, ApplianceModel, ActivityModel) doing what antgen's main.py does, except:
  * configuration comes from models/train/antgen/ (houses.conf, users/, activities/), not from
    antgen's bundled default.conf, whose paths point at the author's machine;
  * appliance models are antgen's bundled AMBAL models (antgen/appliances/<TYPE>/<device>);
  * the house base load is antgen's Gaussian noise option ("G<amplitude>": N(a, a/10) per second),
    applied as in main.py, with the amplitude taken from houses.conf;
  * both `random` (scheduling) and `numpy.random` (NOISE components, base load) are seeded per
    house, so the output is reproducible (main.py seeds only `random`);
  * the 1 s traces are averaged to 60 s means (what a meter reporting average power per minute
    gives) and written as one .npz per house instead of 1 s CSV files and an event log.

Usage: generate.py OUT_DIR [--days N] [--houses h01,h02,...]
"""
import argparse
import configparser
import importlib.util
import json
import logging
import os
import random
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
CFG = os.path.join(HERE, "antgen")
TARGETS = ["KETTLE", "REFRIGERATOR", "WASHINGMACHINE", "DISHWASHER", "MICROWAVE"]


def load_antgen():
    spec = importlib.util.find_spec("antgen")
    pkg_dir = list(spec.submodule_search_locations)[0]
    # antgen's modules import each other as top-level modules (`import Tools`)
    sys.path.insert(0, pkg_dir)
    import ActivityModel as activity_module  # noqa: E402
    import ApplianceModel as appliance_module  # noqa: E402
    import UserModel as user_module  # noqa: E402
    import Tools  # noqa: E402

    # ActivityModel resolves 'activities/<file>' relative to its own module file; point it at our
    # configuration directory instead of the package's bundled activities.
    activity_module.__file__ = os.path.join(CFG, "ActivityModel.py")
    return pkg_dir, appliance_module.ApplianceModel, user_module.UserModel, Tools


def generate_house(name, sect, days, step, pkg_dir, ApplianceModel, UserModel, Tools):
    seed = int(sect["seed"])
    random.seed(seed)
    np.random.seed(seed)
    first_day = random.randint(0, 6)

    users = {}
    for u in [x.strip() for x in sect["users"].split(",") if x.strip()]:
        # UserModel joins 'users' with the path; an absolute path wins
        users[u] = UserModel(os.path.join(CFG, "users", u + ".conf"), days, first_day)

    appliances = {}
    # ApplianceModel strips a leading '/' and re-reads its folder on every run, so the working
    # directory stays at the package directory (see main) and folders are given relative to it.
    for key, folder in sect.items():
        if key.upper() != key:
            continue  # lower-case keys are house settings, upper-case ones appliance types
        am = ApplianceModel(key, os.path.join("appliances", folder), days)
        appliances[am.appliance_type] = am

    for user in users.values():
        for rd in user.get_required_devices():
            if rd not in appliances:
                raise SystemExit(f"{name}: no appliance model for {rd}")
            user.bind_appliance_model(rd, appliances[rd])

    duration = days * Tools.secs_per_day
    all_powers = {"total": np.zeros([1, duration])}
    all_events = []
    for user in users.values():
        user.synthesize(all_powers, all_events, first_day, True)  # vary AMBAL instance per run

    base = float(sect.get("base_load_w", "0"))
    if base > 0:
        all_powers["total"] += np.random.normal(base, base / 10, duration)
        all_powers["total"][0][all_powers["total"][0] < 0] = 0

    def to_step(x):
        return x.reshape(-1, step).mean(axis=1).astype(np.float32)

    out = {"aggregate": to_step(all_powers["total"][0])}
    for t in TARGETS:
        out[t] = to_step(appliances[t].total_power[0])
    runs = {}
    for ev in all_events:
        _, kind, src, what = ev.split(";")
        if kind == "DEV" and what == "ON":
            runs[src] = runs.get(src, 0) + 1
    return out, runs, first_day


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--days", type=int)
    ap.add_argument("--houses")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(name)s [%(levelname).1s] %(message)s")
    # the ECO-H1 washing-machine models carry type "05" instead of a name: harmless, not worth a line per run
    logging.getLogger("ApplianceModel").setLevel(logging.ERROR)

    conf = configparser.ConfigParser()
    conf.optionxform = str
    conf.read(os.path.join(CFG, "houses.conf"))
    days = args.days or conf.getint("GENERAL", "days")
    step = conf.getint("GENERAL", "step_seconds")
    pkg_dir, ApplianceModel, UserModel, Tools = load_antgen()
    args.out = os.path.abspath(args.out)
    os.makedirs(args.out, exist_ok=True)
    os.chdir(pkg_dir)

    wanted = args.houses.split(",") if args.houses else [s for s in conf.sections() if s != "GENERAL"]
    manifest = {}
    for h in wanted:
        t0 = time.time()
        out, runs, first_day = generate_house(h, conf[h], days, step, pkg_dir, ApplianceModel, UserModel, Tools)
        np.savez_compressed(os.path.join(args.out, f"{h}.npz"), **out)
        manifest[h] = {
            "split": conf[h]["split"], "seed": int(conf[h]["seed"]), "days": days, "step_s": step,
            "first_weekday": first_day, "users": conf[h]["users"], "runs": runs,
            "mean_aggregate_w": float(out["aggregate"].mean()),
        }
        print(f"{h} ({conf[h]['split']}): {days} days, mean {out['aggregate'].mean():.0f} W, "
              f"runs {json.dumps({k: runs.get(k, 0) for k in TARGETS})} in {time.time() - t0:.0f} s", flush=True)
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)


if __name__ == "__main__":
    main()
