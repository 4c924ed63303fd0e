from cxr_model.model_card import measured_since, render_measured


def test_what_was_measured_of_a_version_after_its_card_is_kept_and_the_rest_left_out():
    tags = {"arrivals.v12": "champion version 11 on the 40 films of 30 new patients ...",
            "assessment.site-b": "AUC 0.951, sensitivity 0.962, specificity 0.801 on 300 films",
            "promotion.decision": "rejected", "promotion.reasons": "worse by 0.02", "threshold": "0.2",
            "dataset_fingerprint": "abc"}
    measured = measured_since(tags)
    assert list(measured) == ["arrivals.v12", "assessment.site-b", "promotion.decision"]
    text = render_measured(measured)
    assert "- promotion: rejected" in text
    assert "- on cohort site-b: AUC 0.951" in text
    assert "- as champion, arrivals before version 12: champion version 11 on the 40 films" in text
    assert "Nothing yet" in render_measured({})
