import argparse
import sys

import generate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m generate", description=generate.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 with a diff if a generated file is stale")
    parser.add_argument("--only", action="append", metavar="NAME",
                        choices=[g.name for g in generate.GENERATORS], help="run only this generator (repeatable)")
    args = parser.parse_args(argv)
    return generate.check(args.only) if args.check else generate.generate(args.only)


if __name__ == "__main__":
    sys.exit(main())
