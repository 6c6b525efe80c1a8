import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tools import speed  # noqa: E402


def test_speed_reports_forward_and_decoding_of_max_lanes(tmp_path, capsys):
    out = tmp_path / "new" / "speed.json"
    result = speed.main([str(ROOT / "configs" / "srlane_r18_synthetic.py"), "--iters", "2", "--warmup", "1",
                         "--threads", "1", "--json", str(out)])
    assert json.loads(out.read_text()) == result
    assert result["forward_ms"] > 0 and result["decode_ms"] > 0
    assert result["end_to_end_ms"] >= result["decode_ms"]
    assert result["fps"] == 1000 / result["end_to_end_ms"]
    table = capsys.readouterr().out
    assert "crafted proposals, 4 lanes per image" in table and "forward ms/batch" in table
