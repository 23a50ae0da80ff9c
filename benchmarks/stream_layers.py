"""One streamed sample's latency, batch 1, one thread: the compiled stream (``deploy.stream.Streamer``) against the
model's per-sample PyTorch step (``stream_classifier`` with the engine off), side by side in one process, for a
6 x 64 GRU on one channel whose head reads every layer (the recipe's readout) or the top layer's last step; and
the recipe's model as it now is, reading the channel's values and first differences (the last raw sample kept in
the stream's state), against the same head on the values alone.

    python benchmarks/stream_layers.py

Prints the median over samples 50 to 399 of a 400-sample stream, best of three rounds, in microseconds.
"""

import statistics
import time

import torch

from dilated_rnn import engine
from dilated_rnn.data.transform import InputTransform
from dilated_rnn.deploy.stream import Streamer
from dilated_rnn.model import DilatedRNNClassifier
from dilated_rnn.model.streaming import stream_classifier
from dilated_rnn.trained import TrainedModel


def _median_us(call, x) -> float:
    state, times = None, []
    for k in range(x.shape[1]):
        start = time.perf_counter()
        _, state = call(x[:, k : k + 1], state)
        times.append(time.perf_counter() - start)
    return statistics.median(times[50:]) * 1e6


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    x = torch.randn(1, 400, 1)
    for readout in ("layers", "last"):
        model = DilatedRNNClassifier(1, [64] * 6, [1, 2, 4, 8, 16, 32], "gru", num_classes=5, readout=readout).eval()
        compiled = Streamer(TrainedModel(model))

        def pytorch_step(sample, state):
            with torch.inference_mode(), engine.use("torch"):
                return stream_classifier(model, sample, state)

        rounds = [(_median_us(compiled, x), _median_us(pytorch_step, x)) for _ in range(3)]
        print(f"readout {readout}: compiled {min(r[0] for r in rounds):.1f} us, "
              f"PyTorch step {min(r[1] for r in rounds):.1f} us")
    values = DilatedRNNClassifier(1, [64] * 6, [1, 2, 4, 8, 16, 32], "gru", num_classes=5, readout="layers").eval()
    both = DilatedRNNClassifier(2, [64] * 6, [1, 2, 4, 8, 16, 32], "gru", num_classes=5, readout="layers").eval()
    plain = Streamer(TrainedModel(values, InputTransform(None, torch.zeros(1), torch.ones(1))))
    differenced = Streamer(TrainedModel(both, InputTransform(None, torch.zeros(2), torch.ones(2), differences=True)))
    rounds = [(_median_us(plain, x), _median_us(differenced, x)) for _ in range(3)]
    print(f"readout layers, compiled, normalized: values {min(r[0] for r in rounds):.1f} us, "
          f"values and first differences {min(r[1] for r in rounds):.1f} us")


if __name__ == "__main__":
    main()
