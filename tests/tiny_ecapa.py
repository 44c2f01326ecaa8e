"""A tiny, randomly initialised SpeechBrain ECAPA-TDNN written in spkrec-ecapa-voxceleb's own layout.

Tests need an ECAPA directory that loads exactly like the real one (same ``hyperparams.yaml``
structure, same pretrainer, same checkpoint formats) without an 83 MB download. This builds one
with small channels (0.19 M parameters in the embedding model instead of 20.8 M) and a fixed seed:

    hyperparams.yaml         the hub file's structure; ``pretrained_path`` is the hub id, as in the
                             real file, so a loader that does not override it would reach the network
    embedding_model.ckpt     ECAPA_TDNN state dict (torch.save)
    mean_var_norm_emb.ckpt   InputNormalization(norm_type=global) statistics (its own saver)
    classifier.ckpt          ECAPA Classifier state dict, over ``N_LABELS`` fake speakers
    label_encoder.txt        CategoricalEncoder file for those speakers

Its embeddings carry no speaker information; they are deterministic and 192-dimensional.
Run as a script to write one: ``python tests/tiny_ecapa.py OUT_DIR``.
"""

from __future__ import annotations

import sys
from pathlib import Path

#: Real spkrec-ecapa-voxceleb uses [1024, 1024, 1024, 1024, 3072]; res2net_scale=8 needs multiples of 8.
CHANNELS = [64, 64, 64, 64, 192]
EMBEDDING_DIM = 192
N_MELS = 80
N_LABELS = 4
SEED = 1234

HYPERPARAMS = f"""\
# ############################################################################
# Model: tiny random ECAPA-TDNN for idme's tests (layout of speechbrain/spkrec-ecapa-voxceleb)
# ############################################################################

# Feature parameters
n_mels: {N_MELS}

# Pretrain folder (the real file names the hub repository here, not a local path)
pretrained_path: speechbrain/spkrec-ecapa-voxceleb

# Output parameters
out_n_neurons: {N_LABELS}

# Model params
compute_features: !new:speechbrain.lobes.features.Fbank
    n_mels: !ref <n_mels>

mean_var_norm: !new:speechbrain.processing.features.InputNormalization
    norm_type: sentence
    std_norm: False

embedding_model: !new:speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN
    input_size: !ref <n_mels>
    channels: {CHANNELS}
    kernel_sizes: [5, 3, 3, 3, 1]
    dilations: [1, 2, 3, 4, 1]
    attention_channels: 16
    se_channels: 16
    lin_neurons: {EMBEDDING_DIM}

classifier: !new:speechbrain.lobes.models.ECAPA_TDNN.Classifier
    input_size: {EMBEDDING_DIM}
    out_neurons: !ref <out_n_neurons>

mean_var_norm_emb: !new:speechbrain.processing.features.InputNormalization
    norm_type: global
    std_norm: False

modules:
    compute_features: !ref <compute_features>
    mean_var_norm: !ref <mean_var_norm>
    embedding_model: !ref <embedding_model>
    mean_var_norm_emb: !ref <mean_var_norm_emb>
    classifier: !ref <classifier>

label_encoder: !new:speechbrain.dataio.encoder.CategoricalEncoder

pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        embedding_model: !ref <embedding_model>
        mean_var_norm_emb: !ref <mean_var_norm_emb>
        classifier: !ref <classifier>
        label_encoder: !ref <label_encoder>
    paths:
        embedding_model: !ref <pretrained_path>/embedding_model.ckpt
        mean_var_norm_emb: !ref <pretrained_path>/mean_var_norm_emb.ckpt
        classifier: !ref <pretrained_path>/classifier.ckpt
        label_encoder: !ref <pretrained_path>/label_encoder.txt
"""


def write_tiny_ecapa(out_dir: str | Path) -> Path:
    """Write the tiny model's five files into ``out_dir`` (created); returns the directory."""
    import torch
    from speechbrain.dataio.encoder import CategoricalEncoder
    from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN, Classifier
    from speechbrain.processing.features import InputNormalization

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED)
    embedding_model = ECAPA_TDNN(
        N_MELS, channels=CHANNELS, kernel_sizes=[5, 3, 3, 3, 1], dilations=[1, 2, 3, 4, 1],
        attention_channels=16, se_channels=16, lin_neurons=EMBEDDING_DIM)
    classifier = Classifier(EMBEDDING_DIM, out_neurons=N_LABELS)
    torch.save(embedding_model.state_dict(), out / "embedding_model.ckpt")
    torch.save(classifier.state_dict(), out / "classifier.ckpt")

    # Global embedding statistics need at least one update before they can be saved.
    norm = InputNormalization(norm_type="global", std_norm=False)
    norm.train()
    norm(torch.randn(8, 1, EMBEDDING_DIM), torch.ones(8))
    norm._save(out / "mean_var_norm_emb.ckpt")

    encoder = CategoricalEncoder()
    encoder.update_from_iterable([f"spk{i}" for i in range(N_LABELS)])
    encoder.save(out / "label_encoder.txt")

    (out / "hyperparams.yaml").write_text(HYPERPARAMS, encoding="utf-8")
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/tiny_ecapa.py OUT_DIR")
    print(write_tiny_ecapa(sys.argv[1]))
