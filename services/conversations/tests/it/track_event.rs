//! TrackEvent: recorded, validated.

use proto::v1 as pb;

use crate::helpers::{assert_error, spawn};

#[tokio::test]
async fn events_are_recorded_without_updating_the_conversation() {
    let mut app = spawn().await;
    let request = pb::TrackEventRequest {
        app_id: app.app_id.clone(),
        app_user_id: "user1".into(),
        name: "completed_sale".into(),
        app_user: None,
    };
    let reply = app.client.track_event(request).await.unwrap().into_inner();
    assert_eq!(
        reply,
        pb::TrackEventResponse {
            conversation_updated: false,
            conversation_created: false,
        }
    );
    let names: Vec<String> =
        sqlx::query_scalar("SELECT name FROM events WHERE app_id = $1 AND app_user_id = $2")
            .bind(&app.app_id)
            .bind("user1")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(names, ["completed_sale"]);
}

#[tokio::test]
async fn event_names_must_not_be_blank() {
    let mut app = spawn().await;
    let request = pb::TrackEventRequest {
        app_id: app.app_id.clone(),
        app_user_id: "user1".into(),
        name: " ".into(),
        app_user: None,
    };
    let err = app.client.track_event(request).await.unwrap_err();
    assert_error(&err, tonic::Code::InvalidArgument, "bad_request", "name");
}
