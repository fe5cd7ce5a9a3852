"""The tiny tier's foundation: a synthetic pretraining corpus and the loop that pretrains on it."""

from sftvrl.tiny.corpus import HELD_OUT_FACES, GPCorpusConfig, gp_corpus
from sftvrl.tiny.pretrain import (
    PretrainConfig,
    PretrainExperiment,
    PretrainResult,
    foundation_info,
    pretrain,
    weights_sha256,
)

__all__ = [
    "HELD_OUT_FACES",
    "GPCorpusConfig",
    "PretrainConfig",
    "PretrainExperiment",
    "PretrainResult",
    "foundation_info",
    "gp_corpus",
    "pretrain",
    "weights_sha256",
]
