"""What Common Crawl has published about the size of each monthly snapshot.

``curate pipeline --plan --input CC-MAIN-YYYY-WW`` starts from these figures, so a plan can be
checked against the snapshot a user actually reads:

* ``PAGES``: page captures and unique content digests (a HyperLogLog estimate) per snapshot, from
  Common Crawl's own statistics, https://commoncrawl.github.io/cc-crawl-statistics/ (the file
  ``plots/crawlsize/monthly.csv`` of github.com/commoncrawl/cc-crawl-statistics at commit
  011ff43f50c8c744ff891f027fec7a44677b2545, its newest snapshot CC-MAIN-2024-42); CC-MAIN-2024-51
  from its announcement (2.64 billion pages). Numbers only, as published.
* ``ANNOUNCED``: snapshots whose announcement gives the WARC files and their compressed size, or
  the uncompressed size: CC-MAIN-2016-40 (30,374 WARC files, 28.94 TiB), CC-MAIN-2019-09 (64,000
  WARC files, 59.86 TiB; 225 TiB uncompressed) and CC-MAIN-2024-51 (394 TiB uncompressed).

Bytes come from the one published measurement of compressed WARC bytes per page: 22.6 kB in
CC-MAIN-2019-09 (59.86 TiB / 2.91 billion pages), ~1.03 GB per WARC file (59.86 TiB / 64,000).
For recent snapshots this is an estimate that may be low: the uncompressed content per page grew
from 84.9 kB (2019-09) to 164 kB (2024-51), while a 2024 study of the archive (Thompson,
arXiv:2404.09770) puts each recent snapshot at "on the order of 75TB", ~25 kB per page at 3
billion pages. Only the plan's network read and its WARC file count rest on it; time and cost
rest on the page counts, which are Common Crawl's.
"""

from __future__ import annotations

TIB = 2**40

# snapshot: (page captures, unique content digests)
PAGES: dict[str, tuple[int, int]] = {
    "CC-MAIN-2013-20": (1_796_098_643, 1_675_186_145),
    "CC-MAIN-2013-48": (2_245_773_667, 2_123_908_635),
    "CC-MAIN-2014-10": (2_301_223_474, 2_115_654_671),
    "CC-MAIN-2014-15": (2_641_371_316, 2_250_363_653),
    "CC-MAIN-2014-23": (3_608_720_876, 3_127_260_498),
    "CC-MAIN-2014-35": (2_870_692_423, 2_513_136_600),
    "CC-MAIN-2014-41": (2_979_743_543, 2_643_268_717),
    "CC-MAIN-2014-42": (3_722_131_678, 3_004_865_099),
    "CC-MAIN-2014-49": (1_948_510_433, 1_675_826_663),
    "CC-MAIN-2014-52": (2_085_977_207, 1_917_739_931),
    "CC-MAIN-2015-06": (1_826_024_103, 1_663_353_964),
    "CC-MAIN-2015-11": (1_837_196_089, 1_660_875_177),
    "CC-MAIN-2015-14": (1_646_697_534, 1_497_626_091),
    "CC-MAIN-2015-18": (2_115_818_059, 1_910_978_257),
    "CC-MAIN-2015-22": (2_015_461_448, 1_821_352_251),
    "CC-MAIN-2015-27": (1_675_619_098, 1_525_928_862),
    "CC-MAIN-2015-32": (1_815_492_409, 1_613_612_273),
    "CC-MAIN-2015-35": (1_848_022_475, 1_677_929_649),
    "CC-MAIN-2015-40": (1_321_987_379, 1_188_702_135),
    "CC-MAIN-2015-48": (1_824_170_527, 1_643_268_398),
    "CC-MAIN-2016-07": (1_733_285_122, 1_546_567_872),
    "CC-MAIN-2016-18": (1_335_046_923, 1_211_048_216),
    "CC-MAIN-2016-22": (1_466_220_798, 1_308_787_436),
    "CC-MAIN-2016-26": (1_236_815_660, 1_080_537_066),
    "CC-MAIN-2016-30": (1_737_322_304, 1_537_831_071),
    "CC-MAIN-2016-36": (1_611_613_090, 1_435_966_389),
    "CC-MAIN-2016-40": (1_722_656_393, 1_538_695_808),
    "CC-MAIN-2016-44": (3_254_976_731, 3_040_453_061),
    "CC-MAIN-2016-50": (2_866_282_390, 2_835_369_567),
    "CC-MAIN-2017-04": (3_146_498_026, 3_124_474_229),
    "CC-MAIN-2017-09": (3_084_366_662, 3_075_159_558),
    "CC-MAIN-2017-13": (3_070_720_576, 3_076_918_527),
    "CC-MAIN-2017-17": (2_942_930_482, 2_915_114_582),
    "CC-MAIN-2017-22": (2_967_293_699, 2_913_487_045),
    "CC-MAIN-2017-26": (3_165_214_086, 3_090_678_021),
    "CC-MAIN-2017-30": (2_892_213_652, 2_731_370_763),
    "CC-MAIN-2017-34": (3_280_080_910, 3_321_321_532),
    "CC-MAIN-2017-39": (3_017_180_563, 2_954_936_664),
    "CC-MAIN-2017-43": (3_650_430_218, 3_568_900_959),
    "CC-MAIN-2017-47": (3_204_943_573, 3_147_013_327),
    "CC-MAIN-2017-51": (2_914_004_423, 2_838_391_323),
    "CC-MAIN-2018-05": (3_464_537_205, 3_405_797_273),
    "CC-MAIN-2018-09": (3_488_463_319, 3_473_010_805),
    "CC-MAIN-2018-13": (3_232_738_018, 3_159_524_180),
    "CC-MAIN-2018-17": (3_101_353_989, 3_012_333_785),
    "CC-MAIN-2018-22": (2_788_388_007, 2_744_992_004),
    "CC-MAIN-2018-26": (3_069_414_247, 2_987_363_973),
    "CC-MAIN-2018-30": (3_263_958_200, 3_179_521_724),
    "CC-MAIN-2018-34": (2_686_323_358, 2_622_248_769),
    "CC-MAIN-2018-39": (2_841_194_829, 2_779_896_284),
    "CC-MAIN-2018-43": (3_041_784_523, 3_015_132_452),
    "CC-MAIN-2018-47": (2_646_568_544, 2_561_180_363),
    "CC-MAIN-2018-51": (3_164_247_635, 3_119_954_567),
    "CC-MAIN-2019-04": (2_889_726_642, 2_783_709_611),
    "CC-MAIN-2019-09": (2_913_733_422, 2_803_066_951),
    "CC-MAIN-2019-13": (2_569_681_845, 2_497_065_618),
    "CC-MAIN-2019-18": (2_497_818_607, 2_438_027_577),
    "CC-MAIN-2019-22": (2_679_746_250, 2_630_765_347),
    "CC-MAIN-2019-26": (2_594_261_117, 2_554_582_339),
    "CC-MAIN-2019-30": (2_594_798_375, 2_531_580_647),
    "CC-MAIN-2019-35": (2_954_836_065, 2_833_688_958),
    "CC-MAIN-2019-39": (2_561_062_912, 2_492_717_822),
    "CC-MAIN-2019-43": (3_019_036_529, 2_924_967_393),
    "CC-MAIN-2019-47": (2_590_595_173, 2_514_913_197),
    "CC-MAIN-2019-51": (2_471_904_965, 2_406_286_576),
    "CC-MAIN-2020-05": (3_101_097_173, 3_028_524_398),
    "CC-MAIN-2020-10": (2_629_963_462, 2_598_864_641),
    "CC-MAIN-2020-16": (2_886_236_237, 2_865_127_577),
    "CC-MAIN-2020-24": (2_763_206_762, 2_685_892_317),
    "CC-MAIN-2020-29": (3_144_733_420, 3_040_070_894),
    "CC-MAIN-2020-34": (2_449_834_239, 2_354_875_952),
    "CC-MAIN-2020-40": (3_473_571_206, 3_407_171_814),
    "CC-MAIN-2020-45": (2_731_063_243, 2_627_114_869),
    "CC-MAIN-2020-50": (2_642_471_501, 2_556_108_707),
    "CC-MAIN-2021-04": (3_401_286_407, 3_317_353_644),
    "CC-MAIN-2021-10": (2_736_749_883, 2_698_208_760),
    "CC-MAIN-2021-17": (3_134_424_806, 3_057_706_409),
    "CC-MAIN-2021-21": (2_632_142_465, 2_590_708_976),
    "CC-MAIN-2021-25": (2_457_631_756, 2_404_813_154),
    "CC-MAIN-2021-31": (3_165_089_855, 3_060_540_112),
    "CC-MAIN-2021-39": (2_959_903_779, 2_880_390_023),
    "CC-MAIN-2021-43": (3_349_178_015, 3_304_468_971),
    "CC-MAIN-2021-49": (2_527_075_799, 2_445_330_855),
    "CC-MAIN-2022-05": (2_986_392_030, 2_923_130_207),
    "CC-MAIN-2022-21": (3_449_824_215, 3_397_499_191),
    "CC-MAIN-2022-27": (3_109_609_672, 3_065_329_274),
    "CC-MAIN-2022-33": (2_588_690_250, 2_506_544_286),
    "CC-MAIN-2022-40": (3_176_763_048, 3_100_384_124),
    "CC-MAIN-2022-49": (3_381_612_888, 3_327_669_734),
    "CC-MAIN-2023-06": (3_189_578_207, 3_129_891_467),
    "CC-MAIN-2023-14": (3_118_633_413, 3_061_148_112),
    "CC-MAIN-2023-23": (3_140_573_968, 3_063_301_913),
    "CC-MAIN-2023-40": (3_445_015_037, 3_398_196_830),
    "CC-MAIN-2023-50": (3_354_042_124, 3_296_666_094),
    "CC-MAIN-2024-10": (3_106_525_566, 3_005_351_878),
    "CC-MAIN-2024-18": (2_786_800_057, 2_736_902_585),
    "CC-MAIN-2024-22": (2_709_877_975, 2_639_673_318),
    "CC-MAIN-2024-26": (2_798_047_026, 2_751_769_686),
    "CC-MAIN-2024-30": (2_546_630_395, 2_456_863_301),
    "CC-MAIN-2024-33": (2_315_926_416, 2_261_433_594),
    "CC-MAIN-2024-42": (2_495_190_754, 2_425_001_789),
    "CC-MAIN-2024-51": (2_640_000_000, 0),
}

ANNOUNCED = {
    "CC-MAIN-2016-40": {"warc_files": 30_374, "warc_bytes": 28.94 * TIB},
    "CC-MAIN-2019-09": {"warc_files": 64_000, "warc_bytes": 59.86 * TIB, "uncompressed": 225 * TIB},
    "CC-MAIN-2024-51": {"uncompressed": 394 * TIB},
}

_MEASURED = ANNOUNCED["CC-MAIN-2019-09"]
BYTES_PER_PAGE = _MEASURED["warc_bytes"] / PAGES["CC-MAIN-2019-09"][0]  # ~22.6 kB
WARC_FILE_BYTES = _MEASURED["warc_bytes"] / _MEASURED["warc_files"]  # ~1.03 GB


def snapshot(name: str) -> dict:
    """Pages, compressed bytes and WARC files of snapshot ``name`` (upper case), with where
    each comes from. A snapshot missing from the table (newer than it) gets the mean of the
    newest twelve, and its ``basis`` says so."""
    name = name.upper()
    known = PAGES.get(name)
    if known:
        pages = float(known[0])
        basis = f"{name}: {pages / 1e9:.3f} billion pages (Common Crawl's statistics)"
    else:
        recent = [p for p, _ in list(PAGES.values())[-12:]]
        pages = sum(recent) / len(recent)
        basis = (
            f"{name} is not in the shipped table (newest {list(PAGES)[-1]}): the mean of the newest "
            f"12 snapshots, {pages / 1e9:.2f} billion pages"
        )
    announced = ANNOUNCED.get(name, {})
    if "warc_bytes" in announced:
        size, files = announced["warc_bytes"], float(announced["warc_files"])
        basis += f"; {files:,.0f} WARC files, {size / TIB:.2f} TiB (its announcement)"
    else:
        size = pages * BYTES_PER_PAGE
        files = size / WARC_FILE_BYTES
        basis += (
            f"; bytes and WARC files at CC-MAIN-2019-09's published {BYTES_PER_PAGE / 1e3:.1f} kB per page and "
            f"{WARC_FILE_BYTES / 1e9:.2f} GB per file (recent pages are larger: see curate/workflow/cc_snapshots.py)"
        )
    return {"name": name, "pages": pages, "bytes": size, "warc_files": files, "basis": basis}
