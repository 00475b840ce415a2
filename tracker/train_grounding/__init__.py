"""Training the streaming grounding network (text query -> boxes), beside the box tracker's ``tracker.train``.

- ``captions``: captions from labels, colour words measured from pixels and position words; absent things (negatives);
- ``synth``: synthetic clips of coloured shapes, with their captions;
- ``data``: clips from captioned sequences, labelled photos and synthetic scenes, one batch a step;
- ``losses``: heat map, box, presence and start/end-event losses;
- ``trainer``: the run (``python -m tracker.train_grounding``: seeded, resumable, exported with a manifest entry);
- ``evaluate``: language-only initialisation measured on sequences (``python -m tracker.train_grounding.evaluate``).
"""
