"""microcnn-check DATASET: counts, image summary, unreadable files, duplicates, label conflicts and leaks."""

import json
import sys

from ..dataset_check import check_dataset, problem_count, report_text
from ._common import EXIT_ERROR, EXIT_OK, ArgumentParser, help_formatter, parse, run

PROG = "microcnn-check"
EPILOG = """\
what is checked (an image is "the same" as another when its decoded pixels are identical):
  counts       readable images per class and split (train/, validation/ or valid/ or val/, test/)
  unreadable   files with an image extension that cannot be decoded, with the reason
  duplicates   one image more than once in the same class and split
  conflicts    one image in two or more classes
  leaks        one image in two or more splits (validation/test scores then include training images)

json keys: root, splits, counts {split: {class: n}}, unreadable [{path, reason}], non_images [path],
duplicates / conflicts / leaks [[path, ...], ...], summary {formats, sizes, modes, bit_depths}

exit status: 0 no problems, 1 problems found (or the folder could not be read), 2 bad command line
"""


def build_parser():
    p = ArgumentParser(prog=PROG, description="Check a dataset folder for unreadable, duplicated, "
                       "conflicting and leaked images.", epilog=EPILOG, formatter_class=help_formatter)
    p.add_argument("dataset", metavar="DATASET", help="dataset folder, laid out as for microcnn-train")
    p.add_argument("--format", choices=("text", "json"), default="text", help="output format (default text)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def main(argv=None):
    return run(PROG, _main, argv)


def _progress(items, total):
    from tqdm.auto import tqdm

    return tqdm(items, total=total, desc="Checking", unit="image", disable=None, leave=False, file=sys.stderr)


def _main(argv):
    args = parse(build_parser(), argv)
    result = check_dataset(args.dataset, progress=_progress)
    if args.format == "json":
        json.dump(result, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(report_text(result))
    n = problem_count(result)
    if n:
        print(f"{PROG}: {args.dataset}: {n} problem(s) found", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
