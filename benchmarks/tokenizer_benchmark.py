"""TextPreprocessor speed on product titles and on hostile long words.

Measures, for the graph tokenizer that serving exports,

- texts per second on synthetic product titles in batches of 32,
- the time of one batch of 32 texts that are each a single 8 KiB word
  (CLIP's pattern makes a run of letters, a CJK sentence or a run of
  punctuation one word), for several contents; the worst is the bound a
  hostile request can tie a serving batch up for,

then prints a table and JSON, and exits with status 1 when the worst batch
takes longer than `--max-batch-seconds` (10 s: a quadratic BPE took minutes
on 32 single words of 16 KiB; `--word-bytes 16384` measures that case). The
vocabulary is the tiny preset's unless CLIP's `vocab.json` and `merges.txt`
are given.

    python -m benchmarks.tokenizer_benchmark --json-out FILE
    python -m benchmarks.tokenizer_benchmark --vocabulary vocab.json \
        --merges merges.txt
"""

import argparse
import json
import os
import random
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import tensorflow as tf  # noqa: E402

from benchmarks.result_table import print_json  # noqa: E402
from cmaclip_tf.datasets import SyntheticProducts  # noqa: E402
from cmaclip_tf.preprocessing import TextPreprocessor  # noqa: E402


def hostile_words(num_bytes, rng, vocabulary):
    """`{content: one word of about num_bytes bytes}`, each hard in its way:
    many distinct merges, long repeats, multi-byte characters."""
    letters = "".join(t for t in vocabulary if t.isascii() and t.isalpha())
    return {
        "vocabulary letters": "".join(
            rng.choice(letters) for _ in range(num_bytes)
        ),
        "random a-z": "".join(
            rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(num_bytes)
        ),
        "one letter repeated": "a" * num_bytes,
        "two letters repeated": "ha" * (num_bytes // 2),
        "CJK run": "".join(
            chr(rng.randint(0x4E00, 0x9FFF)) for _ in range(num_bytes // 3)
        ),
        "emoji run": "👗🔥" * (num_bytes // 8),
        "punctuation run": "!?." * (num_bytes // 3),
        "64 letters repeated": "".join(rng.sample(letters, 64))
        * (num_bytes // 64),
    }


def seconds(function, repeats):
    """Median wall time of `function()` after one untimed call."""
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sequence-length", type=int, default=77)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--word-bytes", type=int, default=8192)
    parser.add_argument("--title-batches", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--vocabulary", default=None, help="CLIP vocab.json")
    parser.add_argument("--merges", default=None, help="CLIP merges.txt")
    parser.add_argument("--max-batch-seconds", type=float, default=10.0,
                        help="Budget for the worst hostile batch.")
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args(argv)

    length, batch_size = args.sequence_length, args.batch_size
    if args.vocabulary or args.merges:
        if not (args.vocabulary and args.merges):
            parser.error("--vocabulary and --merges go together.")
        preprocessor = TextPreprocessor.from_files(
            args.vocabulary, args.merges, length
        )
        with open(args.vocabulary, encoding="utf-8") as f:
            vocabulary = json.load(f)
        source = args.vocabulary
    else:
        from cmaclip_tf.models import load_clip

        tokenizer = load_clip("tiny_clip").tokenizer
        preprocessor = TextPreprocessor.from_tokenizer(tokenizer, length)
        vocabulary = tokenizer.vocabulary
        source = "tiny_clip"

    products = SyntheticProducts()
    titles = [
        products.example("train", i, draw=False).title
        for i in range(batch_size * args.title_batches)
    ]
    title_batches = [
        tf.constant(titles[i : i + batch_size])
        for i in range(0, len(titles), batch_size)
    ]

    def all_titles():
        for batch in title_batches:
            preprocessor(batch)["token_ids"].numpy()

    title_rate = len(titles) / seconds(all_titles, args.repeats)

    rng = random.Random(0)
    hostile = {}
    for content, word in hostile_words(
        args.word_bytes, rng, vocabulary
    ).items():
        batch = tf.constant([word] * batch_size)
        hostile[content] = seconds(
            lambda: preprocessor(batch)["token_ids"].numpy(), args.repeats
        )
    worst = max(hostile, key=hostile.get)

    kept = length - 2
    token_bytes = preprocessor.max_token_bytes
    results = {
        "vocabulary": source,
        "sequence_length": length,
        "batch_size": batch_size,
        "cpus": os.cpu_count(),
        "max_token_bytes": token_bytes,
        "max_bpe_bytes_per_word": 2 * kept * token_bytes + 3,
        "titles_per_second": title_rate,
        "hostile_word_bytes": args.word_bytes,
        "hostile_batch_seconds": hostile,
        "worst_hostile_batch_seconds": hostile[worst],
        "worst_hostile_content": worst,
        "max_batch_seconds": args.max_batch_seconds,
        "within_budget": hostile[worst] <= args.max_batch_seconds,
    }

    print(
        f"\nTextPreprocessor, {source} vocabulary ({length} tokens, T = "
        f"{token_bytes} bytes, words cut near {2 * kept * token_bytes} "
        f"bytes), {os.cpu_count()} CPUs"
    )
    print(f"{'input':44s} {'batch s':>9s} {'texts/s':>9s}")
    print(
        f"{'product titles':44s} {batch_size / title_rate:9.4f} "
        f"{title_rate:9.0f}"
    )
    for content, time_s in hostile.items():
        label = f"{batch_size} x {args.word_bytes} B single word: {content}"
        print(f"{label:44s} {time_s:9.4f} {batch_size / time_s:9.0f}")
    print_json(results, args.json_out)
    if not results["within_budget"]:
        print(f"FAIL: {worst!r} took {hostile[worst]:.2f} s, over the "
              f"{args.max_batch_seconds} s budget.")
    return results


if __name__ == "__main__":
    sys.exit(0 if main()["within_budget"] else 1)
