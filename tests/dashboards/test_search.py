def test_suggestions_are_options_for_the_datalist(viewer_client, dataset):
    body = viewer_client.get("/search/suggest/?q=BO", HTTP_HX_REQUEST="true").content.decode()
    assert '<option value="botnets">Project</option>' in body
    assert '<option value="bob">User (deleted)</option>' in body


def test_experiments_are_suggested_as_project_slash_name(viewer_client, dataset):
    body = viewer_client.get("/search/suggest/?q=exp").content.decode()
    assert '<option value="botnets/exp1">Experiment</option>' in body
    body = viewer_client.get("/search/suggest/?q=iot/ex").content.decode()
    assert '<option value="iot/exp1">Experiment</option>' in body


def test_search_jumps_to_the_single_match(viewer_client, dataset):
    response = viewer_client.get("/search/?q=carol")
    assert response.status_code == 302
    assert response["Location"] == "/users/carol/"
    assert viewer_client.get("/search/?q=botnets/exp1")["Location"] == (
        "/experiments/botnets/exp1/"
    )


def test_search_lists_several_matches_and_says_when_none(viewer_client, dataset):
    body = viewer_client.get("/search/?q=b").content.decode()
    assert "/users/bob/" in body and "/projects/botnets/" in body
    assert "Nothing is named" in viewer_client.get("/search/?q=zzz").content.decode()
