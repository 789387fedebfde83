"""A plain training script with its own loop, tuned by `autobatch tune -- python ...`:
an MLP on generated Gaussian blobs (no download). See studies/script-blobs.toml."""

import argparse
import sys

import torch
from torch import nn

import autobatch


def blobs(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """n points in 16 dimensions around 4 noisy centres."""
    centres = torch.randn(4, 16, generator=torch.Generator().manual_seed(0)) * 1.2
    y = torch.randint(0, 4, (n,), generator=generator)
    return centres[y] + torch.randn(n, 16, generator=generator), y


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hidden", type=int, default=64)
    args = parser.parse_args()
    trial = autobatch.trial()
    torch.manual_seed(trial.seed)
    generator = torch.Generator().manual_seed(trial.seed)
    x, y = blobs(4096, generator)
    val_x, val_y = blobs(1024, torch.Generator().manual_seed(99))
    model = nn.Sequential(nn.Linear(16, args.hidden), nn.ReLU(), nn.Linear(args.hidden, 4))
    optimizer = torch.optim.SGD(model.parameters(), lr=trial.lr, momentum=trial.momentum)
    while True:
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x) - trial.batch_size + 1, trial.batch_size):
            batch = order[start:start + trial.batch_size]
            loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if trial.step():  # a measurement run has timed its steps
                sys.exit(0)
        with trial.evaluating(), torch.no_grad():
            accuracy = (model(val_x).argmax(1) == val_y).float().mean().item()
        if trial.report(metric=accuracy, loss=loss.item()):
            return


if __name__ == "__main__":
    main()
