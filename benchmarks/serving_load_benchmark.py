"""Load benchmark of the development gRPC server on a CMA-CLIP export.

Starts `python -m serving.server` on a free loopback port and measures:

1. Load: 8 concurrent clients (each with its own channel), 2,000 requests
   in all (one image-text pair each, JPEG and PNG alternating); errors,
   p50/p99 latency, requests per second.
2. Memory: the server's resident memory before and after 10,000 more
   requests whose texts are all distinct (a tokenizer cache or a retrace
   per input would grow it); it must stay bounded.
3. Overhead: median latency over gRPC against a direct call of the same
   signature in this process, at batch 1 and 8, sequentially.

By default it exports an untrained tiny model first (`--model-config tiny`);
`--model-base-path`/`--model-name` serve an existing export instead.

```
python -m benchmarks.serving_load_benchmark [--json-out results.json]
```

Prints a table, then the figures as JSON. Exits 1 on any failed request or
unbounded memory growth.
"""

import argparse
import os
import sys
import tempfile
import threading
import time

import numpy as np

from benchmarks.result_table import print_json
from serving.server_process import ServerProcess

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TASKS = {"color": 3, "pattern": 2}
LABELS = {"color": ["red", "green", "blue"], "pattern": ["plain", "striped"]}
WORDS = (
    "red",
    "blue",
    "striped",
    "cotton",
    "dress",
    "denim",
    "jacket",
    "wool",
    "silk",
    "plain",
    "floral",
    "shirt",
    "linen",
    "black",
)


def export_tiny_model(root, model_config):
    """Saves an untrained model as a training run would, then exports it."""
    from cmaclip_tf.inference.export import export_saved_model
    from cmaclip_tf.inference.inference_bundle import save_inference_bundle
    from cmaclip_tf.models import create_cma_clip

    model, clip, config = create_cma_clip(model_config, TASKS)
    bundle_dir = os.path.join(root, "workdir", "inference")
    save_inference_bundle(
        bundle_dir,
        model,
        clip.tokenizer,
        clip.image_converter,
        LABELS,
        sequence_length=config["sequence_length"],
        metadata={"model": model_config},
    )
    base = os.path.join(root, "models")
    export_saved_model(bundle_dir, base, "cmaclip")
    return base, "cmaclip"


def sample_images():
    import tensorflow as tf

    y, x = np.mgrid[0:96, 0:128]
    pixels = np.stack([x * 2, y * 2, (x + y) % 256], -1).astype("uint8")
    return [
        tf.io.encode_jpeg(pixels, quality=90).numpy(),
        tf.io.encode_png(pixels[:70, :50]).numpy(),
    ]


def distinct_text(index):
    """A product-like text with a made-up word unique to `index`."""
    letters = ""
    value = index + 1
    while value:
        value, digit = divmod(value, 26)
        letters += chr(ord("a") + digit)
    words = [WORDS[(index * 7 + k) % len(WORDS)] for k in range(4)]
    return f"{' '.join(words)} {letters}{index % 97} item {index}"


class DevServer(ServerProcess):
    """`python -m serving.server` with `workers` threads, and its memory."""

    def __init__(self, model_base_path, model_name, workers):
        super().__init__(model_base_path, model_name, ["--workers", str(workers)])

    def rss_bytes(self):
        import psutil

        return psutil.Process(self.process.pid).memory_info().rss


def run_load(address, model_name, total, clients, images, text_for):
    """`total` single-pair requests over `clients` threads; returns figures."""
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    from serving.client import make_predict_request

    latencies, errors = [], []
    counter = iter(range(total))
    lock = threading.Lock()

    def client():
        channel = grpc.insecure_channel(address)
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        while True:
            with lock:
                index = next(counter, None)
            if index is None:
                break
            request = make_predict_request(
                model_name, [images[index % len(images)]], [text_for(index)]
            )
            start = time.perf_counter()
            try:
                stub.Predict(request, timeout=60)
                elapsed = time.perf_counter() - start
                with lock:
                    latencies.append(elapsed)
            except grpc.RpcError as error:
                with lock:
                    errors.append(f"{error.code().name}: {error.details()}")
        channel.close()

    start = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    latencies_ms = np.array(latencies) * 1e3
    return {
        "requests": total,
        "clients": clients,
        "errors": len(errors),
        "first_errors": errors[:3],
        "p50_ms": float(np.percentile(latencies_ms, 50)) if latencies else None,
        "p99_ms": float(np.percentile(latencies_ms, 99)) if latencies else None,
        "mean_ms": float(latencies_ms.mean()) if latencies else None,
        "requests_per_s": total / wall,
        "wall_s": wall,
    }


def median_latency_ms(call, repeats):
    call()  # Warm.
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def grpc_overhead(address, model_name, version_dir, images, batch_sizes, repeats):
    """Median gRPC vs direct in-process latency of `serving_default`."""
    import grpc
    import tensorflow as tf
    import tensorflow_text  # noqa: F401
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    from serving.client import make_predict_request

    signature = tf.saved_model.load(version_dir).signatures["serving_default"]
    channel = grpc.insecure_channel(address)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    results = {}
    for batch_size in batch_sizes:
        batch_images = [images[i % len(images)] for i in range(batch_size)]
        texts = [distinct_text(i) for i in range(batch_size)]
        request = make_predict_request(model_name, batch_images, texts)

        def direct_call(images=batch_images, texts=texts):
            outputs = signature(
                image_bytes=tf.constant(images), text=tf.constant(texts)
            )
            return {key: value.numpy() for key, value in outputs.items()}

        def grpc_call(request=request):
            return stub.Predict(request, timeout=60)

        direct = median_latency_ms(direct_call, repeats)
        over_grpc = median_latency_ms(grpc_call, repeats)
        results[batch_size] = {
            "direct_ms": direct,
            "grpc_ms": over_grpc,
            "ratio": over_grpc / direct,
        }
    channel.close()
    return results


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serving_load_benchmark")
    parser.add_argument(
        "--model-base-path", help="Serve this export instead of a tiny one."
    )
    parser.add_argument("--model-name", default="cmaclip")
    parser.add_argument(
        "--model-config",
        default="tiny",
        help="Config of the untrained model to export (default tiny).",
    )
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--memory-requests", type=int, default=10000)
    parser.add_argument("--workers", type=int, default=8, help="Server threads.")
    parser.add_argument("--overhead-repeats", type=int, default=100)
    parser.add_argument(
        "--max-rss-growth-mib",
        type=float,
        default=64.0,
        help="Fail if the server grows more than this over the distinct-text requests.",
    )
    parser.add_argument("--json-out", help="Also write the figures here.")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    sys.path.insert(0, REPO)
    workspace = tempfile.TemporaryDirectory(prefix="cmaclip_bench_")
    if args.model_base_path:
        base, name = args.model_base_path, args.model_name
    else:
        base, name = export_tiny_model(workspace.name, args.model_config)
    from cmaclip_tf.inference.model_versions import version_numbers

    version_dir = os.path.join(
        base, name, str(version_numbers(os.path.join(base, name))[-1])
    )
    images = sample_images()
    server = DevServer(base, name, args.workers)
    try:
        load = run_load(
            server.address,
            name,
            args.requests,
            args.clients,
            images,
            lambda i: WORDS[i % len(WORDS)] + " " + WORDS[(i // 3) % len(WORDS)],
        )
        rss_before = server.rss_bytes()
        rss_samples = []
        chunk = max(1, args.memory_requests // 5)
        memory_errors = 0
        for start in range(0, args.memory_requests, chunk):
            count = min(chunk, args.memory_requests - start)
            result = run_load(
                server.address,
                name,
                count,
                args.clients,
                images,
                lambda i, offset=start: distinct_text(offset + i),
            )
            memory_errors += result["errors"]
            rss_samples.append(server.rss_bytes())
        rss_after = rss_samples[-1]
        overhead = grpc_overhead(
            server.address, name, version_dir, images, (1, 8), args.overhead_repeats
        )
    finally:
        server.stop()
        workspace.cleanup()

    growth_mib = (rss_after - rss_before) / 2**20
    figures = {
        "load": load,
        "memory": {
            "distinct_text_requests": args.memory_requests,
            "errors": memory_errors,
            "rss_before_mib": rss_before / 2**20,
            "rss_samples_mib": [s / 2**20 for s in rss_samples],
            "rss_after_mib": rss_after / 2**20,
            "growth_mib": growth_mib,
            "bounded": growth_mib <= args.max_rss_growth_mib,
        },
        "grpc_vs_direct": overhead,
        "cpu_count": os.cpu_count(),
    }
    print(f"{'measure':<44} {'value':>12}")
    print(
        f"{'requests (' + str(args.clients) + ' clients)':<44} {load['requests']:>12}"
    )
    print(f"{'errors':<44} {load['errors'] + memory_errors:>12}")
    print(f"{'latency p50 (ms)':<44} {load['p50_ms']:>12.2f}")
    print(f"{'latency p99 (ms)':<44} {load['p99_ms']:>12.2f}")
    print(f"{'requests/s':<44} {load['requests_per_s']:>12.1f}")
    print(f"{'server RSS before distinct texts (MiB)':<44} {rss_before / 2**20:>12.1f}")
    print(
        f"{'server RSS after ' + str(args.memory_requests) + ' (MiB)':<44} "
        f"{rss_after / 2**20:>12.1f}"
    )
    for batch_size, value in overhead.items():
        print(
            f"{f'batch {batch_size}: direct / gRPC median (ms)':<44} "
            f"{value['direct_ms']:>5.2f} / {value['grpc_ms']:>5.2f}"
        )
        print(f"{f'batch {batch_size}: gRPC / direct':<44} {value['ratio']:>12.2f}")
    print_json(figures, args.json_out)
    ok = load["errors"] == 0 and memory_errors == 0 and figures["memory"]["bounded"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
