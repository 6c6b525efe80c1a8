import cv2
import numpy as np

from srlane.data.records import LaneRecord
from srlane.lanes import Lane
from srlane.visualize import GT_COLOUR, MATCH_COLOURS, PRED_COLOUR, draw_lanes, draw_matches, write_visualizations


def test_draw_lanes_colours_predictions_and_ground_truth():
    img = np.zeros((100, 200, 3), np.uint8)
    gt = [np.array([[20.0, 99.0], [20.0, 50.0]])]
    pred = [np.array([[150.0, 99.0], [150.0, 50.0]])]
    out = draw_lanes(img, pred, gt)
    assert tuple(out[75, 20]) == GT_COLOUR and tuple(out[75, 150]) == PRED_COLOUR
    assert not img.any()


def vertical(x: float) -> np.ndarray:
    return np.array([[x, 199.0], [x, 100.0]])


def test_draw_matches_colours_tp_fp_fn_and_counts_them_in_the_legend():
    img = np.zeros((200, 600, 3), np.uint8)
    annotations = [vertical(100), vertical(300)]  # the first matched, the second missed
    predictions = [vertical(500), vertical(100)]  # the first false, the second true
    out = draw_matches(img, annotations, predictions, np.array([True, False]), np.array([False, True]))
    assert tuple(out[150, 100]) == MATCH_COLOURS["matched"]  # thin white over the thick green
    assert tuple(out[150, 97]) == MATCH_COLOURS["tp"]
    assert tuple(out[150, 300]) == MATCH_COLOURS["fn"] and tuple(out[150, 500]) == MATCH_COLOURS["fp"]
    legend = out[:80, :300]
    for colour in MATCH_COLOURS.values():  # every entry of the legend is written in its colour
        assert (legend == colour).all(axis=-1).any(), colour
    assert len(set(MATCH_COLOURS.values())) == 4 and not img.any()


def test_one_picture_per_image_including_images_without_lanes(tmp_path):
    records = []
    for i in range(3):
        path = tmp_path / "data" / "d" / f"{i}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), np.full((40, 80, 3), 90, np.uint8))
        lanes = [np.array([[10.0, 39.0], [30.0, 10.0]], np.float32)] if i else []
        records.append(LaneRecord(img_path=str(path), img_name=f"d/{i}.jpg", lanes=lanes))

    class Data:
        pass

    data = Data()
    data.records = records
    predictions = [[Lane(np.array([[0.5, 0.2], [0.6, 0.9]]))], [], []]
    assert write_visualizations(data, predictions, str(tmp_path / "vis")) == 3
    written = sorted(p.relative_to(tmp_path / "vis").as_posix() for p in (tmp_path / "vis").rglob("*.jpg"))
    assert written == ["d/0.jpg", "d/1.jpg", "d/2.jpg"]
    first = cv2.imread(str(tmp_path / "vis" / "d" / "0.jpg"))
    assert first[20:30, 44:50, 2].max() > 150  # the red prediction crosses x ~ 0.55 * 80
