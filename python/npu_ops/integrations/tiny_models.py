"""Small randomly initialised transformers models that use the ``MultiScaleDeformableAttention`` layer.

Built from configs only (no downloads, no pretrained weights, ResNet / tiny ViT backbones from transformers
itself, no timm), for the integration tests and ``python -m npu_ops.bench.integrations``. d_model 32,
1-2 layers, 2 heads, 2 points: a forward at 64x64 takes milliseconds.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

__all__ = ["BUILDERS", "build", "differentiable_outputs"]


def _resnet(out_features=("stage2", "stage3", "stage4")):
    from transformers import ResNetConfig

    return ResNetConfig(
        embedding_size=16,
        hidden_sizes=[16, 32, 64, 64],
        depths=[1, 1, 1, 1],
        layer_type="basic",
        out_features=list(out_features),
    )


def _bert(vocab: int = 64):
    from transformers import BertConfig

    return BertConfig(
        vocab_size=vocab,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )


def _pixels(batch: int, size: int, gen: torch.Generator) -> Tensor:
    return torch.randn(batch, 3, size, size, generator=gen)


def _deformable_detr(batch, size, gen, d_model=32, heads=2, points=2):
    from transformers import DeformableDetrConfig, DeformableDetrForObjectDetection

    cfg = DeformableDetrConfig(
        backbone_config=_resnet(),
        d_model=d_model,
        encoder_layers=1,
        decoder_layers=2,
        encoder_ffn_dim=2 * d_model,
        decoder_ffn_dim=2 * d_model,
        encoder_attention_heads=heads,
        decoder_attention_heads=heads,
        num_queries=10,
        num_feature_levels=3,
        encoder_n_points=points,
        decoder_n_points=points,
        num_labels=3,
        dropout=0.0,
    )
    return DeformableDetrForObjectDetection(cfg), {"pixel_values": _pixels(batch, size, gen)}


def _rt_detr(batch, size, gen, d_model=32, heads=2, points=2):
    from transformers import RTDetrConfig, RTDetrForObjectDetection

    cfg = RTDetrConfig(
        backbone_config=_resnet(),
        encoder_in_channels=[32, 64, 64],
        encoder_hidden_dim=d_model,
        encoder_ffn_dim=2 * d_model,
        encoder_attention_heads=heads,
        d_model=d_model,
        decoder_in_channels=[d_model] * 3,
        decoder_ffn_dim=2 * d_model,
        decoder_attention_heads=heads,
        decoder_layers=2,
        decoder_n_points=points,
        num_queries=10,
        num_denoising=0,
        num_labels=3,
        anchor_image_size=None,
    )
    return RTDetrForObjectDetection(cfg), {"pixel_values": _pixels(batch, size, gen)}


def _grounding_dino(batch, size, gen, d_model=32, heads=2, points=2, mm: bool = False):
    import transformers as tf

    config_cls = tf.MMGroundingDinoConfig if mm else tf.GroundingDinoConfig
    model_cls = tf.MMGroundingDinoForObjectDetection if mm else tf.GroundingDinoForObjectDetection
    cfg = config_cls(
        backbone_config=_resnet(),
        text_config=_bert(),
        d_model=d_model,
        encoder_layers=1,
        decoder_layers=2,
        encoder_ffn_dim=2 * d_model,
        decoder_ffn_dim=2 * d_model,
        encoder_attention_heads=heads,
        decoder_attention_heads=heads,
        num_queries=10,
        num_feature_levels=3,
        encoder_n_points=points,
        decoder_n_points=points,
        max_text_len=16,
        fusion_droppath=0.0,
        dropout=0.0,
    )
    ids = torch.randint(5, 60, (batch, 7), generator=gen)
    inputs = {"pixel_values": _pixels(batch, size, gen), "input_ids": ids, "attention_mask": torch.ones_like(ids)}
    return model_cls(cfg), inputs


def _mm_grounding_dino(batch, size, gen, d_model=32, heads=2, points=2):
    return _grounding_dino(batch, size, gen, d_model, heads, points, mm=True)


BUILDERS: dict[str, Callable] = {
    "deformable_detr": _deformable_detr,
    "rt_detr": _rt_detr,
    "grounding_dino": _grounding_dino,
    "mm_grounding_dino": _mm_grounding_dino,
}


def build(
    name: str, batch: int = 1, size: int = 64, seed: int = 0, d_model: int = 32, heads: int = 2, points: int = 2
) -> tuple[nn.Module, dict[str, Tensor]]:
    """A model of type ``name`` (a key of :data:`BUILDERS`) in train mode, and inputs for it.

    ``d_model`` / ``heads`` / ``points``: transformer width (FFNs 2x), attention heads and MSDA points per
    level (the backbones stay tiny); the defaults are the test size.
    """
    if name not in BUILDERS:
        raise ValueError(f"build: name must be one of {sorted(BUILDERS)}, got {name!r}")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed + 1)
    model, inputs = BUILDERS[name](batch, size, gen, d_model, heads, points)
    return model.train(), inputs


def differentiable_outputs(output) -> list[Tensor]:
    """The floating-point tensors of a model output (logits, boxes, ...), in a fixed order."""
    items = output.items() if hasattr(output, "items") else enumerate(output)
    found = []
    for _, v in items:
        if isinstance(v, Tensor) and v.is_floating_point() and v.requires_grad:
            found.append(v)
    return found


def _lw_detr(batch, size, gen, d_model=32, heads=2, points=2):
    from transformers import LwDetrConfig, LwDetrForObjectDetection, LwDetrViTConfig

    backbone = LwDetrViTConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=size,
        pretrain_image_size=size,
        patch_size=16,
        num_windows=1,
        out_indices=[1, 2],
    )
    cfg = LwDetrConfig(
        backbone_config=backbone,
        projector_scale_factors=[1.0],
        d_model=d_model,
        decoder_layers=2,
        decoder_self_attention_heads=heads,
        decoder_cross_attention_heads=heads,
        decoder_n_points=points,
        decoder_ffn_dim=2 * d_model,
        num_queries=10,
        group_detr=1,
        num_labels=3,
    )
    return LwDetrForObjectDetection(cfg), {"pixel_values": _pixels(batch, size, gen)}


def _rf_detr(batch, size, gen, d_model=32, heads=2, points=2):
    from transformers import RfDetrConfig, RfDetrDinov2Config, RfDetrForObjectDetection

    backbone = RfDetrDinov2Config(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=size,
        patch_size=16,
        num_windows=1,
        out_indices=[1, 2],
    )
    cfg = RfDetrConfig(
        backbone_config=backbone,
        d_model=d_model,
        decoder_layers=2,
        decoder_self_attention_heads=heads,
        decoder_cross_attention_heads=heads,
        decoder_n_points=points,
        decoder_ffn_dim=2 * d_model,
        num_queries=10,
        group_detr=1,
        num_labels=3,
        dropout=0.0,
    )
    return RfDetrForObjectDetection(cfg), {"pixel_values": _pixels(batch, size, gen)}


def _pp_doclayout(version: str):
    def builder(batch, size, gen, d_model=32, heads=2, points=2):
        import transformers as tf

        config_cls = getattr(tf, f"PPDocLayout{version}Config")
        model_cls = getattr(tf, f"PPDocLayout{version}ForObjectDetection")
        extra = {}
        if version == "V2":  # per-class score thresholds of the layout head
            extra.update(class_thresholds=[0.5] * 3, class_order=[0, 1, 2])
        if version == "V3":  # the mask branch takes the stride-4 map as well
            extra.update(mask_feature_channels=[16, 16], x4_feat_dim=16)
        backbone = _resnet(
            ("stage1", "stage2", "stage3", "stage4") if version == "V3" else ("stage2", "stage3", "stage4")
        )
        cfg = config_cls(
            backbone_config=backbone,
            encoder_in_channels=[32, 64, 64],
            encoder_hidden_dim=d_model,
            encoder_ffn_dim=2 * d_model,
            encoder_attention_heads=heads,
            d_model=d_model,
            decoder_in_channels=[d_model] * 3,
            decoder_ffn_dim=2 * d_model,
            decoder_attention_heads=heads,
            decoder_layers=2,
            decoder_n_points=points,
            num_queries=10,
            num_denoising=0,
            num_labels=3,
            **extra,
        )
        return model_cls(cfg), {"pixel_values": _pixels(batch, size, gen)}

    return builder


BUILDERS.update(
    {
        "lw_detr": _lw_detr,
        "rf_detr": _rf_detr,
        "pp_doclayout_v2": _pp_doclayout("V2"),
        "pp_doclayout_v3": _pp_doclayout("V3"),
        "pp_doclayout_v4": _pp_doclayout("V4"),
    }
)
