"""SQuAD v1.1 dev split by article into a QA training set and a held-out evaluation set (issue 14, goal 3).

    .venv/bin/python benchmarks/squad_split.py [--out out/squad-split] [--train-articles 8:48] [--eval-articles 0:8]
    .venv/bin/squeezebert finetune --task squad --data-dir out/squad-split ...

../shared/data has no SQuAD train file, so the 48 dev articles are cut in two, by 0-based index in file order
(STOP excluded): by default the first 8 evaluate and the next 40 train (squeezebert.data.squad.split_by_article).
OUT gets train-v1.1.json and dev-v1.1.json, the names ``--task squad --data-dir`` looks for, and split.json, which
records the source's sha256, each side's articles, titles, paragraph and question counts. No article title,
paragraph context or question id is on both sides: the split refuses otherwise. The data is read by path, never
copied into the project: OUT belongs under out/ (git-ignored).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from squeezebert.assets import shared_data_dir
from squeezebert.data.squad import EVAL_ARTICLES, TRAIN_ARTICLES, article_range, write_article_split
from squeezebert.data.tabular import DataError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", type=Path, help="a SQuAD JSON file (default: ../shared/data/squad/dev-v1.1.json)")
    ap.add_argument("--out", type=Path, default=Path("out/squad-split"),
                    help="the folder to write (default: %(default)s)")
    ap.add_argument("--train-articles", default=f"{TRAIN_ARTICLES.start}:{TRAIN_ARTICLES.stop}",
                    help="START:STOP, 0-based, STOP excluded (default: %(default)s)")
    ap.add_argument("--eval-articles", default=f"{EVAL_ARTICLES.start}:{EVAL_ARTICLES.stop}",
                    help="START:STOP, 0-based, STOP excluded (default: %(default)s)")
    args = ap.parse_args(argv)
    source = args.source
    if source is None:
        shared = shared_data_dir()
        if shared is None:
            return fail("no --source given and ../shared/data is not beside the checkout")
        source = shared / "squad" / "dev-v1.1.json"
    try:
        record = write_article_split(source, args.out, article_range(args.train_articles),
                                     article_range(args.eval_articles))
    except (DataError, ValueError, OSError) as error:  # DataError is a ValueError; each names the file or range
        return fail(str(error))
    print(f"SQuAD split of {source} ({record['source_articles']} articles, sha256 {record['sha256'][:12]}) "
          f"into {args.out}:")
    for name in ("train", "eval"):
        side = record[name]
        print(f"  {name:5} {side['file']:16} articles {side['articles']:6} ({side['article_count']} articles, "
              f"{side['paragraphs']} paragraphs, {side['questions']} questions): {', '.join(side['titles'])}")
    print(f"  no article title, paragraph context or question id on both sides; record: {args.out / 'split.json'}")
    return 0


def fail(message: str) -> int:
    print(f"squad_split: error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
