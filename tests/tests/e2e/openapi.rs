//! `GET /openapi.json` and `GET /docs`: public, served by the gateway itself (no CDN).

use e2e::{suite, Auth};
use reqwest::{Method, StatusCode};

#[tokio::test]
async fn the_openapi_document_is_public_json_of_every_route() {
    let response = suite()
        .request(Method::GET, "/openapi.json", &Auth::None)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    let spec: serde_json::Value = response.json().await.unwrap();
    assert_eq!(spec["openapi"], "3.1.0");
    for path in [
        "/v1/init",
        "/v1/appusers/{id}/conversation/messages",
        "/v1/appUsers/{id}/conversation/messages",
        "/v1/webhooks/{id}/deliveries",
        "/v1/apps/{app_id}/keys/{key_id}",
        "/media/{app_id}/{key}",
    ] {
        assert!(spec["paths"][path].is_object(), "{path} is not documented");
    }
    let offline: serde_json::Value = serde_json::from_str(&gateway::openapi_json()).unwrap();
    assert_eq!(
        spec, offline,
        "the served document is the one the handlers make"
    );
}

#[tokio::test]
async fn the_docs_page_and_its_assets_are_served_without_credentials() {
    let response = suite()
        .request(Method::GET, "/docs/", &Auth::None)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let html = response.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    // Every script and stylesheet the page loads comes from the gateway.
    assert!(!html.contains("https://"), "{html}");
    for asset in [
        "/docs/swagger-ui.css",
        "/docs/swagger-ui-bundle.js",
        "/docs/swagger-initializer.js",
    ] {
        let response = suite()
            .request(Method::GET, asset, &Auth::None)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{asset}");
        let text = response.text().await.unwrap();
        if asset.ends_with("initializer.js") {
            assert!(text.contains("/openapi.json"), "{text}");
        }
    }
    let response = suite()
        .request(Method::GET, "/docs", &Auth::None)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "/docs redirects to the page"
    );
}
