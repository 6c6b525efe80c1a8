import cv2
import numpy as np

from srlane.data.records import LaneRecord
from srlane.lanes import Lane
from srlane.visualize import GT_COLOUR, PRED_COLOUR, draw_lanes, write_visualizations


def test_draw_lanes_colours_predictions_and_ground_truth():
    img = np.zeros((100, 200, 3), np.uint8)
    gt = [np.array([[20.0, 99.0], [20.0, 50.0]])]
    pred = [np.array([[150.0, 99.0], [150.0, 50.0]])]
    out = draw_lanes(img, pred, gt)
    assert tuple(out[75, 20]) == GT_COLOUR and tuple(out[75, 150]) == PRED_COLOUR
    assert not img.any()


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
