"""RetinaNet: backbone + FPN, a shared head, anchors, assignment, losses and postprocessing.

The model never special-cases a classification loss: the head's class output has
``cls_loss.num_logits(K)`` logits per anchor, its bias is ``cls_loss.init_bias(K, prior)``,
inference scores come from ``cls_loss.scores`` and the training loss from ``cls_loss(...)``.
The per-anchor losses are reduced here, in one place, by the foreground normalizer.

A loss may ask for more through optional members, each read here only (DEVELOPERS.md,
"Contracts"): ``extras`` (what else ``__call__`` is passed, see ``EXTRAS``),
``fit_label_counts`` (a prior measured from the training labels, see ``fit_label_counts``),
``cls_weight`` (a weight on the reduced classification loss) and ``score_thresholds``
(per-class inference thresholds). The losses that have none of them see none of this.
"""

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torchvision.ops import batched_nms, clip_boxes_to_image

from detection.anchors import AnchorGenerator
from detection.boxes import BoxCoder, paired_iou
from detection.head import RetinaHead
from detection.matcher import Matcher
from losses.anatomy import loss_anatomy
from losses.box import BoxLoss
from losses.normalizer import FgNormalizer

# What a loss's ``extras`` (keyword -> source) may name: the model computes each source only
# when a loss asks for it, detached, and passes it as ``cls_loss(logits, labels, keyword=...)``.
EXTRAS = {
    "predicted": "Tensor[N, R, 4]: each anchor's decoded prediction (OHEM's NMS)",
    "anchors": "Tensor[N, R, 4]: the anchors themselves",
    "iou": "Tensor[N, R]: IoU of a foreground anchor's decoded prediction with its matched gt box, "
           "0 for the other anchors (QFL's, VFL's and Rank & Sort's soft targets)",
}


class RetinaNet(nn.Module):
    """A RetinaNet-style one-stage detector.

    Args:
        num_classes: K.
        cls_loss: a classification loss object (see DEVELOPERS.md, "Contracts").
        backbone: a module mapping images Tensor[N, 3, H, W] to the pyramid [P3, ..., P7],
            with ``strides`` and ``out_channels`` (detection/backbone.py; configs/model/backbone/).
        head_convs, head_width, head_norm: the subnets' conv count, width and norm (None | "gn").
        prior_prob: foreground probability every anchor starts with (paper: 0.01).
        prior_init: False starts the class bias at 0 instead (an ablation).
        anchor_generator, assigner, box_loss, normalizer, box_coder: the parts; None builds
            the RetinaNet defaults. The assigner labels the anchors (``configs/assigner/``:
            ``max_iou``, the default, or ``atss``; contract in detection/matcher.py).
        score_thresh, topk_candidates, nms_thresh, detections_per_img: inference, per the
            paper: per level the top 1000 scores above 0.05, NMS at 0.5, 100 per image.
        one_class_per_anchor: inference keeps only each anchor's top class (a control: the
            paper's sigmoid heads may emit several classes per anchor, a softmax's probabilities
            compete).

    ``forward(images, targets)`` in training mode returns a dict of losses and statistics;
    in eval mode ``forward(images, targets)`` returns one dict per image with ``boxes``
    (xyxy, original image pixels), ``scores`` and ``labels`` (0..K-1); targets then only need
    ``size`` (resized h, w) and ``orig_size`` (original h, w).
    """

    def __init__(self, num_classes: int, cls_loss, backbone: nn.Module, head_convs: int = 4,
                 head_width: int = 256, head_norm=None, prior_prob: float = 0.01,
                 prior_init: bool = True, anchor_generator=None, assigner=None, box_loss=None,
                 normalizer=None, box_coder=None, score_thresh: float = 0.05,
                 topk_candidates: int = 1000, nms_thresh: float = 0.5, detections_per_img: int = 100,
                 one_class_per_anchor: bool = False):
        super().__init__()
        self.num_classes = num_classes
        self.cls_loss = cls_loss
        self.backbone = backbone
        self.anchor_generator = anchor_generator or AnchorGenerator()
        if tuple(self.anchor_generator.strides) != tuple(self.backbone.strides):
            raise ValueError(
                f"anchor strides {self.anchor_generator.strides} do not match the backbone's "
                f"pyramid strides {tuple(self.backbone.strides)}"
            )
        self.head = RetinaHead(
            self.backbone.out_channels, self.anchor_generator.num_anchors_per_location,
            cls_loss.num_logits(num_classes), num_convs=head_convs, width=head_width,
            norm=head_norm, init_bias=cls_loss.init_bias(num_classes, prior_prob),
            prior_init=prior_init,
        )
        self.assigner = assigner or Matcher()
        self.box_loss = box_loss or BoxLoss()
        self.normalizer = normalizer or FgNormalizer()
        self.box_coder = box_coder or BoxCoder()
        self.score_thresh = score_thresh
        self.topk_candidates = topk_candidates
        self.nms_thresh = nms_thresh
        self.detections_per_img = detections_per_img
        self.one_class_per_anchor = one_class_per_anchor
        self.prior_prob, self.prior_init = prior_prob, prior_init
        for keyword, source in getattr(cls_loss, "extras", {}).items():
            if source not in EXTRAS:
                raise ValueError(f"{cls_loss!r} asks for {keyword}={source!r}: expected one of {sorted(EXTRAS)}")

    # The normalizer's EMA is training state: keep it in the state_dict so that a resumed
    # run divides by exactly what the uninterrupted run would have.
    # So is a stateful loss's (GHM-C's running bin counts, random sampling's generator).
    def get_extra_state(self):
        state = {"normalizer": self.normalizer.state_dict()}
        if hasattr(self.cls_loss, "state_dict"):
            state["cls_loss"] = self.cls_loss.state_dict()
        return state

    def set_extra_state(self, state):
        self.normalizer.load_state_dict(state["normalizer"])
        if hasattr(self.cls_loss, "load_state_dict"):
            if "cls_loss" not in state:
                raise ValueError(f"the checkpoint has no state for the classification loss {self.cls_loss!r} "
                                 "(it was written with another loss)")
            self.cls_loss.load_state_dict(state["cls_loss"])

    def forward(self, images: Tensor, targets: list[dict], with_stats: bool = False):
        cls_logits, box_deltas, anchors, sizes = self.predict(images)
        if self.training:
            return self.losses(cls_logits, box_deltas, anchors, sizes, targets, with_stats)
        per_level = self.anchor_generator.num_anchors_per_level(sizes)
        return self.postprocess(cls_logits, box_deltas, anchors, per_level, targets)

    def predict(self, images: Tensor):
        """Raw outputs for Tensor[N, 3, H, W] images: class logits Tensor[N, R, C], box deltas
        Tensor[N, R, 4], the anchors Tensor[R, 4] and the feature map sizes [(h_l, w_l)]."""
        features = self.backbone(images)
        cls_logits, box_deltas = self.head(features)  # (N, R, C), (N, R, 4)
        sizes = [tuple(f.shape[-2:]) for f in features]
        anchors = self.anchor_generator.grid_anchors(sizes, device=images.device)  # (R, 4)
        return cls_logits, box_deltas, anchors, sizes

    def match(self, anchors, targets, sizes):
        """Labels Tensor[N, R] (-1 ignore, 0..K-1, K background) and matched gt index Tensor[N, R]
        of anchors Tensor[R, 4] on feature maps of ``sizes`` [(h_l, w_l)] (as ``predict`` gives them)."""
        return self.assigner.match_batch(
            anchors, [t["boxes"] for t in targets], [t["labels"] for t in targets], self.num_classes,
            [t["ignore_boxes"] for t in targets], self.anchor_generator.num_anchors_per_level(sizes),
        )

    def foreground(self, labels: Tensor, matched: Tensor, targets: list[dict]):
        """The foreground anchors' image and anchor indices (Tensor[P] each) and their matched
        gt boxes Tensor[P, 4] (float32), for ``labels`` and ``matched`` Tensor[N, R]."""
        img_idx, anchor_idx = ((labels >= 0) & (labels < self.num_classes)).nonzero(as_tuple=True)
        if not len(img_idx):
            return img_idx, anchor_idx, labels.new_zeros(0, 4, dtype=torch.float32)
        gt_boxes = torch.cat([t["boxes"] for t in targets])
        # index of each foreground anchor's gt in the concatenated gt list
        first = torch.tensor([0] + [len(t["boxes"]) for t in targets][:-1], device=labels.device).cumsum(0)
        return img_idx, anchor_idx, gt_boxes[first[img_idx] + matched[img_idx, anchor_idx]].float()

    @torch.no_grad()
    def anchor_losses(self, images: Tensor, targets: list[dict]):
        """Per-anchor classification loss Tensor[N, R] and labels Tensor[N, R], unreduced.

        For analysis (e.g. the distribution of the loss over foreground and background
        anchors); training uses ``forward``.
        """
        cls_logits, box_deltas, anchors, sizes = self.predict(images)
        labels, matched = self.match(anchors, targets, sizes)
        # A stateful loss (GHM-C's running counts, sampling's generator) must not learn from
        # or draw for the images of an analysis: its state is put back.
        state = self.cls_loss.state_dict() if hasattr(self.cls_loss, "state_dict") else None
        loss = self.classification_loss(cls_logits, box_deltas, anchors, labels,
                                        self.foreground(labels, matched, targets))
        if state is not None:
            self.cls_loss.load_state_dict(state)
        return loss, labels

    def classification_loss(self, cls_logits: Tensor, box_deltas: Tensor, anchors: Tensor, labels: Tensor,
                            foreground) -> Tensor:
        """``cls_loss(cls_logits, labels, **extras)``: Tensor[N, R], 0 where ignored.

        ``foreground`` is ``self.foreground(...)``. A loss whose ``extras`` maps keywords to
        sources of ``EXTRAS`` gets each, detached; e.g. OHEM's ``{"boxes": "predicted"}``,
        QFL's ``{"quality": "iou"}``.
        """
        extras = {}
        for keyword, source in getattr(self.cls_loss, "extras", {}).items():
            with torch.no_grad():
                if source == "anchors":
                    extras[keyword] = anchors.expand(len(labels), *anchors.shape)  # (N, R, 4)
                elif source == "predicted":
                    extras[keyword] = self.box_coder.decode(anchors, box_deltas.detach())  # (N, R, 4)
                else:  # "iou", checked in __init__
                    img_idx, anchor_idx, gt = foreground
                    pred = self.box_coder.decode(anchors[anchor_idx], box_deltas[img_idx, anchor_idx].detach())
                    quality = torch.zeros(labels.shape, dtype=torch.float32, device=labels.device)  # (N, R)
                    quality[img_idx, anchor_idx] = paired_iou(pred.float(), gt)
                    extras[keyword] = quality
        return self.cls_loss(cls_logits, labels, **extras)

    def losses(self, cls_logits, box_deltas, anchors, sizes, targets, with_stats=False) -> dict:
        """Classification and box losses, both divided by the same foreground normalizer.

        Returns a dict with ``loss`` (what is minimised), ``loss_cls``, ``loss_box`` and the
        normalizer; with ``with_stats`` also the anchor counts per image and the anatomy of
        the classification loss (detached, for logging). A loss with ``cls_weight(loss_cls,
        loss_box) -> Tensor`` (detached scalar) has ``loss = cls_weight * loss_cls + loss_box``
        and the weight in the dict as ``cls_weight``; ``loss_cls`` is always the unweighted one.
        """
        k = self.num_classes
        labels, matched = self.match(anchors, targets, sizes)  # (N, R), (N, R)
        img_idx, anchor_idx, gt = foreground = self.foreground(labels, matched, targets)  # (P,), (P,), (P, 4)
        cls_per_anchor = self.classification_loss(cls_logits, box_deltas, anchors, labels, foreground)  # (N, R)
        fg = (labels >= 0) & (labels < k)
        norm = self.normalizer(fg.sum())
        if len(img_idx):
            box_per_anchor = self.box_loss(box_deltas[img_idx, anchor_idx].float(), anchors[anchor_idx], gt,
                                           self.box_coder)  # (P,)
            loss_box = box_per_anchor.sum() / norm
        else:
            loss_box = box_deltas.sum() * 0.0  # keeps the graph (DDP needs every parameter used)
        loss_cls = cls_per_anchor.sum() / norm
        out = {"loss_cls": loss_cls, "loss_box": loss_box, "normalizer": norm}
        if hasattr(self.cls_loss, "cls_weight"):  # e.g. sampling-free's guided scaling; logged, detached
            out["cls_weight"] = self.cls_loss.cls_weight(loss_cls.detach(), loss_box.detach())
            out["loss"] = out["cls_weight"] * loss_cls + loss_box
        else:
            out["loss"] = loss_cls + loss_box
        if with_stats:
            with torch.no_grad():
                n = len(targets)
                out["num_fg"] = fg.sum() / n
                out["num_bg"] = (labels == k).sum() / n
                out["num_ignore"] = (labels == -1).sum() / n
                out.update(loss_anatomy(cls_per_anchor.detach(), labels, self.cls_loss.scores(cls_logits.detach())))
        return out

    def score_thresholds(self) -> Tensor:
        """Tensor[K] float32: the score a detection of each class must exceed. The loss's
        ``score_thresholds()`` when it has one and it gives them (sampling-free's
        class-adaptive thresholds, once measured), else ``score_thresh`` for every class."""
        own = self.cls_loss.score_thresholds() if hasattr(self.cls_loss, "score_thresholds") else None
        if own is None:
            return torch.full((self.num_classes,), float(self.score_thresh))
        if own.shape != (self.num_classes,):
            raise ValueError(f"{self.cls_loss!r}.score_thresholds() has shape {tuple(own.shape)}, "
                             f"expected ({self.num_classes},)")
        return own.float()

    @property
    def fits_label_counts(self) -> bool:
        """Whether the loss starts from label frequencies measured on the training data
        (``fit_label_counts``): train.py then counts them once before a fresh run."""
        return hasattr(self.cls_loss, "fit_label_counts")

    @torch.no_grad()
    def fit_label_counts(self, batches) -> Tensor:
        """Counts the labels the assigner gives the anchors of ``batches`` ((images, targets)
        pairs, as the training loader's, without augmentation), summed over the ranks under
        torch.distributed; hands them to the loss (``cls_loss.fit_label_counts(counts)``) and
        sets the class bias to the loss's ``init_bias`` again (unless ``prior_init`` is off).

        Returns the counts Tensor[K + 2] int64: index 0 the ignored anchors, 1..K the
        anchors of each class, K + 1 the background anchors. No parameter of the network
        is changed but the class bias: the backbone runs once per image size (in eval mode),
        for its feature map sizes.
        """
        k = self.num_classes
        device = self.head.cls_subnet[-1].bias.device
        counts = torch.zeros(k + 2, dtype=torch.int64, device=device)
        sizes_of = {}
        for images, targets in batches:
            hw = tuple(images.shape[-2:])
            if hw not in sizes_of:  # in eval mode: the probe must not move BatchNorm's statistics
                training, probe = self.backbone.training, torch.zeros(1, 3, *hw, device=device)
                sizes_of[hw] = [tuple(f.shape[-2:]) for f in self.backbone.eval()(probe)]
                self.backbone.train(training)
            anchors = self.anchor_generator.grid_anchors(sizes_of[hw], device=device)  # (R, 4)
            targets = [{key: t[key].to(device) for key in ("boxes", "labels", "ignore_boxes")} for t in targets]
            labels, _ = self.match(anchors, targets, sizes_of[hw])  # (N, R)
            counts += torch.bincount(labels.flatten() + 1, minlength=k + 2)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(counts)
        counts = counts.cpu()
        self.cls_loss.fit_label_counts(counts)
        if self.prior_init:
            self.head.set_class_bias(self.cls_loss.init_bias(k, self.prior_prob))
        return counts

    @torch.no_grad()
    def postprocess(self, cls_logits, box_deltas, anchors, per_level, targets) -> list[dict]:
        """Top-k per level above the score threshold, decode, per-class NMS, keep the best.

        Done for the whole batch at once: candidates of all images go through one batched
        NMS whose groups are (image, class) pairs.
        """
        n, k = cls_logits.shape[0], self.num_classes
        thresh = self.score_thresholds().to(cls_logits.device)  # (K,)
        cand_scores, cand_img, cand_label, cand_boxes = [], [], [], []
        start = 0
        for count in per_level:
            scores = self.cls_loss.scores(cls_logits[:, start:start + count].float())  # (N, R_l, K)
            if self.one_class_per_anchor:
                scores = torch.where(scores == scores.amax(-1, keepdim=True), scores, 0.0)
            scores = scores.reshape(n, -1)  # (N, R_l * K)
            top, idx = scores.topk(min(self.topk_candidates, scores.shape[1]), dim=1)  # (N, T)
            img, col = (top > thresh[idx % k]).nonzero(as_tuple=True)
            flat = idx[img, col]
            anchor = flat // k + start
            cand_scores.append(top[img, col])
            cand_img.append(img)
            cand_label.append(flat % k)
            cand_boxes.append(self.box_coder.decode(anchors[anchor], box_deltas[img, anchor]))
            start += count
        scores, img, label, boxes = (torch.cat(x) for x in (cand_scores, cand_img, cand_label, cand_boxes))
        sizes = torch.tensor([t["size"] for t in targets], dtype=boxes.dtype, device=boxes.device)  # (N, 2) h, w
        # clip to the image's own (unpadded) extent
        boxes = torch.minimum(boxes.clamp(min=0), sizes[img][:, [1, 0, 1, 0]])
        # boxes squeezed to nothing by the clipping (all outside the image) are not detections
        wh = boxes[:, 2:] - boxes[:, :2]
        valid = (wh > 1e-2).all(dim=1)
        scores, img, label, boxes = scores[valid], img[valid], label[valid], boxes[valid]
        keep = batched_nms(boxes, scores, img * k + label, self.nms_thresh)  # sorted by score
        keep = keep[torch.argsort(img[keep], stable=True)]  # grouped by image, score order within
        counts = torch.bincount(img[keep], minlength=n)
        rank = torch.arange(len(keep), device=keep.device) - (counts.cumsum(0) - counts).repeat_interleave(counts)
        keep = keep[rank < self.detections_per_img]
        orig = torch.tensor([t["orig_size"] for t in targets], dtype=boxes.dtype, device=boxes.device)
        scale = (orig / sizes)[:, [1, 0, 1, 0]]  # (N, 4): x, y, x, y factors to original pixels
        out_boxes = boxes[keep] * scale[img[keep]]
        results = []
        for i, part in enumerate(torch.split(torch.arange(len(keep), device=keep.device), counts.clamp(max=self.detections_per_img).tolist())):
            h, w = targets[i]["orig_size"]
            results.append({
                "boxes": clip_boxes_to_image(out_boxes[part], (int(h), int(w))),
                "scores": scores[keep[part]],
                "labels": label[keep[part]],
            })
        return results
