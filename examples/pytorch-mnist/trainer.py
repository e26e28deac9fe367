#!/usr/bin/env python3
"""McMahan et al.'s MNIST CNN in PyTorch, federated by Shoal.

    shoal simulate --trainer '/usr/bin/python3 examples/pytorch-mnist/trainer.py --data-dir DIR'

The model is the CNN of McMahan et al. 2017 and of Shoal's built-in --model cnn: 5×5 conv 32
('same') + ReLU, 2×2 max-pool, 5×5 conv 64 + ReLU, 2×2 max-pool, dense 512 + ReLU, dense 10;
1,663,370 parameters, He-normal weights and zero biases like the built-in model. The first half of
this file is an ordinary PyTorch model and training loop; ShoalModel at the end is all Shoal needs.
"""

import argparse
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))

import shoal_trainer  # noqa: E402
from shoal_trainer import mnist  # noqa: E402


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 5, padding=2)
        self.conv2 = nn.Conv2d(32, 64, 5, padding=2)
        self.fc1 = nn.Linear(64 * 7 * 7, 512)
        self.fc2 = nn.Linear(512, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


class TwoNN(nn.Module):
    """McMahan et al.'s 2NN (784-200-200-10, 199,210 parameters), for the bridge benchmark."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(784, 200), nn.Linear(200, 200), nn.Linear(200, 10)

    def forward(self, x):
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x.flatten(1))))))


def batches(images, labels, idx, batch_size):
    for start in range(0, len(idx), batch_size):
        rows = idx[start:start + batch_size]
        yield images[rows].unsqueeze(1).float().div_(255), labels[rows]


def train(model, images, labels, idx, epochs, batch_size, opt, generator, hook=None):
    """The usual loop: E epochs of minibatch SGD on the examples idx; the last epoch's mean loss."""
    model.train()
    for _ in range(epochs):
        total = 0.0
        for x, y in batches(images, labels, idx[torch.randperm(len(idx), generator=generator)], batch_size):
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            if hook:
                hook()
            opt.step()
            total += loss.item() * len(y)
    return total / len(idx)


@torch.no_grad()
def test(model, images, labels, idx):
    """Mean loss and accuracy on the examples idx."""
    model.eval()
    loss = correct = 0.0
    for x, y in batches(images, labels, idx, 1000):
        out = model(x)
        loss += F.cross_entropy(out, y, reduction="sum").item()
        correct += (out.argmax(1) == y).sum().item()
    return loss / len(idx), correct / len(idx)


class ShoalModel:
    """The Shoal glue: parameters in and out as NumPy arrays, one fit and one evaluate."""

    def __init__(self, data_dir, model="cnn"):
        self.model, self.data_dir, self.sets = {"cnn": CNN, "2nn": TwoNN}[model](), data_dir, {}

    def data(self, split):  # uint8 images, scaled per batch; the evaluator never loads "train"
        if split not in self.sets:
            images, labels = mnist.load(self.data_dir, split)
            self.sets[split] = torch.from_numpy(images.copy()), torch.from_numpy(labels)
        return self.sets[split]

    def get_parameters(self):
        return {k: v.detach().numpy() for k, v in self.model.state_dict().items()}

    def set_parameters(self, parameters):
        self.model.load_state_dict({k: torch.from_numpy(v) for k, v in parameters.items()})

    def initial_parameters(self, seed):  # He-normal weights, zero biases, as the built-in cnn
        g = torch.Generator().manual_seed(seed % (1 << 63))
        with torch.no_grad():
            for name, p in self.model.named_parameters():
                if name.endswith("weight"):  # fan-in: in_channels·k·k or in_features
                    p.copy_(torch.randn(p.shape, generator=g) * (2.0 / p[0].numel()) ** 0.5)
                else:
                    p.zero_()
        return self.get_parameters()

    def fit(self, parameters, task):
        self.set_parameters(parameters)
        images, labels = self.data("train")
        idx = torch.arange(len(labels)) if task.indices is None else torch.from_numpy(task.indices.astype(np.int64))
        if len(idx) == 0:
            raise ValueError("no training examples")
        opt = torch.optim.SGD(self.model.parameters(), lr=task.lr, momentum=task.momentum,
                              weight_decay=task.weight_decay)
        hook = None
        if task.prox_mu:  # FedProx: μ·(w − w_received) joins the gradient
            start = [p.detach().clone() for p in self.model.parameters()]
            hook = lambda: [p.grad.add_(p.detach() - s, alpha=task.prox_mu) for p, s in zip(self.model.parameters(), start)]  # noqa: E731
        g = torch.Generator().manual_seed(task.seed % (1 << 63))
        loss = train(self.model, images, labels, idx, task.epochs, task.batch_size, opt, g, hook)
        return self.get_parameters(), len(idx), loss

    def evaluate(self, parameters, task):
        self.set_parameters(parameters)
        images, labels = self.data("test")
        idx = torch.arange(len(labels)) if task.indices is None else torch.from_numpy(task.indices.astype(np.int64))
        if len(idx) == 0:
            return 0.0, 0.0, 0
        loss, acc = test(self.model, images, labels, idx)
        return loss, acc, len(idx)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=os.environ.get("SHOAL_MNIST_DIR", ""),
                    help="directory of the four MNIST IDX files (default $SHOAL_MNIST_DIR)")
    ap.add_argument("--model", choices=("cnn", "2nn"), default="cnn", help="cnn (default) or 2nn")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per trainer process (default 1)")
    args = ap.parse_args()
    if not args.data_dir:
        ap.error("--data-dir (or $SHOAL_MNIST_DIR) is required")
    torch.set_num_threads(args.threads)
    sys.exit(shoal_trainer.serve(ShoalModel(args.data_dir, args.model), name="pytorch-mnist-" + args.model))


if __name__ == "__main__":
    main()
