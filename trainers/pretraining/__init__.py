"""Contrastive pretraining of CLIP (`trainers/pretrain.py`): the trainer, its
stage and the program."""
