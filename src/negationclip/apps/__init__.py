"""Downstream uses of a NegationCLIP text encoder: Stable Diffusion (``diffusion``), the
negation score of generated images (``negation_score``), CLIPSeg referring segmentation
(``segmentation``) and its evaluation (``seg_eval``). Submodules import heavy libraries
(diffusers) lazily, so import the one you need."""
