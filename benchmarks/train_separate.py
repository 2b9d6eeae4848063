"""Training throughput with edgecnn and PyTorch each in its own process, alternating.

    python benchmarks/train_separate.py [--models keras-mnist,lenet5,default] [--threads 2]
                                        [--alternations 3] [--rounds 3] [--steps 5]

Why: in one process the two libraries' OpenMP runtimes share the environment. Importing edgecnn sets
OMP_WAIT_POLICY=PASSIVE with GOMP_SPINCOUNT=3000 (its choice for shared hosts), which torch's libgomp
then also reads and which slows torch's small ops on a VM; importing torch first makes both runtimes spin and fight over the
two cores. Here each side runs with its own library's defaults, one process at a time, alternating
edgecnn, torch, edgecnn, ... (the host's load drifts), and the medians of all rounds are compared.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def _child(side, name, threads, rounds, steps, batch):
    sys.path.insert(0, HERE)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    if side == "torch":
        import torch  # before edgecnn: its libgomp keeps torch's own defaults
        torch.set_num_threads(threads)
    import train as T
    from edgecnn import models
    from edgecnn._jit import set_num_threads
    if side == "edgecnn":
        set_num_threads(threads)
        *_, run = T.bench_edgecnn(name, batch, steps)
    else:
        _, run = T.bench_torch(name, batch, steps, models.build(name))
    run()  # warm
    print(json.dumps([run() for _ in range(rounds)]))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="keras-mnist,lenet5,default")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--alternations", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--child", nargs=2, metavar=("SIDE", "MODEL"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args.child[0], args.child[1], args.threads, args.rounds, args.steps, args.batch)
        return
    env = dict(os.environ, NUMBA_NUM_THREADS=str(args.threads))
    print(f"threads {args.threads}, batch {args.batch}, {args.alternations} alternations x {args.rounds} rounds "
          f"x {args.steps} steps per side; load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    for name in args.models.split(","):
        runs = {"edgecnn": [], "torch": []}
        for _ in range(args.alternations):
            for side in runs:
                out = subprocess.run([sys.executable, __file__, "--threads", str(args.threads), "--rounds",
                                      str(args.rounds), "--steps", str(args.steps), "--batch", str(args.batch),
                                      "--child", side, name], env=env, capture_output=True, text=True, check=True)
                runs[side] += json.loads(out.stdout.strip().splitlines()[-1])
        e, t = statistics.median(runs["edgecnn"]), statistics.median(runs["torch"])
        print(f"{name:12s} edgecnn {e:8.0f} img/s   torch {t:8.0f} img/s   ratio {e / t:.2f}x")


if __name__ == "__main__":
    main()
