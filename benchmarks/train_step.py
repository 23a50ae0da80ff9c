"""Training-step time, pruned classifier vs. full computation, each cell, side by side.

    python benchmarks/train_step.py --threads 2 --out benchmarks/results/train_step-cpu.json
"""

import argparse
import sys

import torch

from dilated_rnn.bench import bench_train_step, environment


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cells", default="lstm,gru,rnn")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=5, help="timed steps per variant (median reported)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    results = {"environment": environment(args.device), "results": []}
    print(f"{'cell':5} {'pruned s':>9} {'full s':>9} {'ratio':>6} {'pruned MB':>10} {'full MB':>9}")
    for cell in args.cells.split(","):
        r = bench_train_step(cell, args.batch_size, args.steps, args.warmup, args.device)
        results["results"].append(r)
        mb = lambda b: f"{b / 2**20:.1f}" if b is not None else "-"
        print(f"{cell:5} {r['pruned_s']:9.4f} {r['full_s']:9.4f} {r['ratio']:6.3f} "
              f"{mb(r['pruned_peak_bytes']):>10} {mb(r['full_peak_bytes']):>9}", flush=True)
    if args.out:
        from dilated_rnn.files import write_json

        write_json(args.out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
