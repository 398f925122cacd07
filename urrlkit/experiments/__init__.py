"""Experiments over the stages: the results report (`urrl report`) and the paper replica (`urrl replica`)."""
