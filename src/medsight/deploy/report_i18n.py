"""The printable prediction report's words in English and Simplified Chinese, so one template renders
a report a clinician can read in either language (data values -- class names, warnings, the model
card's own text -- are shown as the bundle wrote them)."""

from __future__ import annotations

from collections.abc import Mapping

from medsight.errors import InvalidConfig

LANGUAGES = ("en", "zh-CN")

_EN: dict[str, str] = {
    "notice": ("Decision support, not a diagnosis. This result was produced by a statistical model "
               "and must be reviewed by a qualified professional together with the full clinical "
               "picture."),
    "title": "medsight prediction: {source}",
    "heading": "Prediction",
    "input": "Input:",
    "result": "Result:",
    "no_label": "no label above threshold",
    "confidence": "confidence {value}",
    "threshold_on": "decision threshold {value} on {target}",
    "positive_class": "the positive class",
    "sep": ", ",
    "open": " (",
    "close": ")",
    "end": ".",
    "warnings": "Warnings",
    "image_alt": "input image",
    "image_caption": "Image as read",
    "overlay_alt": "heatmap overlay",
    "overlay_caption": ("Heatmap ({method}, class {cls}, on the {grid} grid): where the evidence for "
                        "that class lies, not a segmentation"),
    "annotated_alt": "image with the detected boxes",
    "annotated_caption": "Boxes scoring at least {threshold}, each with its class and score",
    "counts": "Counts per class",
    "count": "count",
    "boxes_heading": "Counted boxes ({shown} of {total} returned)",
    "box": "box [x1, y1, x2, y2] (pixels)",
    "score": "score",
    "grid_original": "original",
    "grid_model input": "model input",
    "probabilities": "Probabilities",
    "class": "class",
    "probability": "probability",
    "model": "Model",
    "name": "name",
    "kind": "kind",
    "uuid": "UUID",
    "task": "task",
    "trained_on": "{task}; trained on {modality} images",
    "threshold": "threshold",
    "none": "none",
    "test_metric": "test {metric}",
    "ci": "95% CI",
    "intended_use": "Intended use and limitations",
    "input_timing": "Input and timing",
    "input_line": "Shape {shape}, modality {modality}, spacing {spacing};",
    "unknown": "unknown",
    "ms": "ms",
    "record": "Record",
    "record_id": "prediction id",
    "record_created": "created (UTC)",
    "record_pseudonym": "patient pseudonym",
    "record_study_date": "study date (shifted)",
    "record_user": "requested by",
    "reviews": "Reviews",
    "review_agree": "agrees",
    "review_disagree": "disagrees",
    "no_reviews": "not reviewed yet",
    "source_heading": "Source: PACS",
    "source_server": "PACS",
    "source_study": "study UID",
    "source_series": "series UID",
    "source_instance": "instance UID",
    "source_link": "Open the study in the PACS viewer",
    "source_results": "results written back to the PACS",
    "source_no_results": "none yet",
    "task_binary": "binary",
    "task_multiclass": "multiclass",
    "task_multilabel": "multilabel",
    "task_ordinal": "ordinal",
    "task_detection": "detection",
    "timing_read": "read",
    "timing_preprocess": "preprocess",
    "timing_checks": "checks",
    "timing_inference": "inference",
    "timing_heatmap": "heatmap",
    "timing_drawing": "drawing",
    "timing_total": "total",
    # the index page of `medsight predict --report-dir`
    "index_title": "medsight predictions: {model}",
    "index_heading": "Predictions with {model} {version}",
    "index_summary": "{count} input(s), {failed} could not be predicted. Model UUID",
    "index_number": "#",
    "index_input": "input",
    "index_result": "result",
    "index_confidence": "confidence",
    "index_warnings": "warnings",
    "index_failed": "not predicted: {reason}",
}

_ZH: dict[str, str] = {
    "notice": ("仅供辅助决策，并非诊断。本结果由统计模型生成，"
               "必须由具备资质的专业人员结合完整的临床情况进行审核。"),
    "title": "medsight 预测：{source}",
    "heading": "预测结果",
    "input": "输入：",
    "result": "结果：",
    "no_label": "没有超过阈值的标签",
    "confidence": "置信度 {value}",
    "threshold_on": "决策阈值 {value}，作用于{target}",
    "positive_class": "阳性类别",
    "sep": "，",
    "open": "（",
    "close": "）",
    "end": "。",
    "warnings": "警告",
    "image_alt": "输入图像",
    "image_caption": "读取的图像",
    "overlay_alt": "热力图叠加",
    "overlay_caption": "热力图（{method}，类别 {cls}，{grid}网格）：显示该类别证据所在的位置，并非分割结果",
    "annotated_alt": "标注了检测框的图像",
    "annotated_caption": "得分不低于 {threshold} 的检测框，标有类别与得分",
    "counts": "各类别计数",
    "count": "数量",
    "boxes_heading": "计入的检测框（共返回 {total} 个，计入 {shown} 个）",
    "box": "框 [x1, y1, x2, y2]（像素）",
    "score": "得分",
    "grid_original": "原始图像",
    "grid_model input": "模型输入",
    "probabilities": "各类别概率",
    "class": "类别",
    "probability": "概率",
    "model": "模型",
    "name": "名称",
    "kind": "类型",
    "uuid": "UUID",
    "task": "任务",
    "trained_on": "{task}；使用{modality}图像训练",
    "threshold": "阈值",
    "none": "无",
    "test_metric": "测试集 {metric}",
    "ci": "95% 置信区间",
    "intended_use": "预期用途与局限性",
    "input_timing": "输入与耗时",
    "input_line": "尺寸 {shape}，模态 {modality}，像素间距 {spacing}；",
    "unknown": "未知",
    "ms": "毫秒",
    "record": "记录",
    "record_id": "预测编号",
    "record_created": "创建时间（UTC）",
    "record_pseudonym": "患者化名",
    "record_study_date": "检查日期（已偏移）",
    "record_user": "申请人",
    "reviews": "复核意见",
    "review_agree": "同意",
    "review_disagree": "不同意",
    "no_reviews": "尚未复核",
    "source_heading": "来源：PACS",
    "source_server": "PACS",
    "source_study": "检查 UID",
    "source_series": "序列 UID",
    "source_instance": "实例 UID",
    "source_link": "在 PACS 阅片器中打开该检查",
    "source_results": "已写回 PACS 的结果",
    "source_no_results": "尚无",
    "task_binary": "二分类",
    "task_multiclass": "多分类",
    "task_multilabel": "多标签",
    "task_ordinal": "有序分级",
    "task_detection": "目标检测",
    "timing_read": "读取",
    "timing_preprocess": "预处理",
    "timing_checks": "检查",
    "timing_inference": "推理",
    "timing_heatmap": "热力图",
    "timing_drawing": "绘制",
    "timing_total": "总计",
    "index_title": "medsight 预测：{model}",
    "index_heading": "使用 {model} {version} 的预测",
    "index_summary": "共 {count} 个输入，{failed} 个无法预测。模型 UUID",
    "index_number": "序号",
    "index_input": "输入",
    "index_result": "结果",
    "index_confidence": "置信度",
    "index_warnings": "警告",
    "index_failed": "未能预测：{reason}",
}

_STRINGS: dict[str, dict[str, str]] = {"en": _EN, "zh-CN": _ZH}


def report_language(lang: str | None) -> str:
    """The supported code for `lang` ("en", "zh-CN"; case-insensitive, "zh", "zh-Hans" and other
    Chinese variants written in simplified characters map to "zh-CN"); None means English."""
    if lang is None:
        return "en"
    low = lang.strip().lower().replace("_", "-")
    if low in ("en",) or low.startswith("en-"):
        return "en"
    if low in ("zh", "zh-cn", "zh-hans", "zh-sg", "zh-hans-cn", "zh-hans-sg", "zh-my"):
        return "zh-CN"
    raise InvalidConfig(f"report language {lang!r} is not available: use one of {', '.join(LANGUAGES)}")


def strings(lang: str | None = "en") -> Mapping[str, str]:
    """The report's strings in `lang` (see `report_language`); an unsupported language raises
    InvalidConfig naming the ones there are."""
    return _STRINGS[report_language(lang)]


__all__ = ["LANGUAGES", "report_language", "strings"]
