"""The quickstart with lane kinds: SRLane R18 and a category head, from scratch on the synthetic
road set in OpenLane's layout, sized for a 2-core CPU.

The set (1000 training, 300 validation frames of 1920x1280, written as OpenLane writes them:
images/, lane3d_1000/, every lane with its OpenLane category) is generated under
datasets/synthetic_openlane on first use. Its scenes draw every kind OpenLane names: white and
yellow, solid, dashed, double and mixed lines, and the road edges as left and right curbs.

The recipe is the quickstart's (configs/schedules/synthetic_cpu.py: 384x160, batch 8, AdamW, a
long warmup, 800 iterations) with a head of 14 classes (every OpenLane category) on the refine stage.
The crop keeps the bottom 800 rows (1920x800 has the input's aspect ratio). Validation reports
the official 2D F-score, which counts a lane only with the right kind, and the kinds' table:
accuracy on matched lanes, F1 per kind, the confusion matrix. The augmentation keeps colours
(no channel shuffle: it would turn yellow paint blue); the flip mirrors mixed kinds and curbs.
"""

_base_ = ["models/srlane_r18.py", "datasets/openlane.py", "schedules/synthetic_cpu.py"]

dataset = dict(
    data_root="datasets/synthetic_openlane",
    generate=dict(train=1000, test=300, seed=0),  # generated when data_root is missing
)
augmentation = dict(channel_shuffle=0.0)
max_lanes = 8  # up to 6 lines and 2 curbs in a synthetic frame
model = dict(num_lane_categories=14)
