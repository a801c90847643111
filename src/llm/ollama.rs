//! Ollama's native API (`/api/chat`): unlike its `/v1`, it can set the
//! context size (`num_ctx`) and how long a model stays loaded (`keep_alive`),
//! which is how a small GPU takes turns between a big and a small model.

use std::time::Instant;

use serde_json::{Value, json};

use super::sse::Lines;
use super::{
    Body, BoxFuture, ChatRequest, ChatResponse, Health, LlmClient, LlmError, Sink, StreamEvent,
    Timeouts, Usage,
};
use crate::registry::Provider;

pub struct OllamaClient {
    root: String,
    timeouts: Timeouts,
    http: reqwest::Client,
}

impl OllamaClient {
    pub fn new(p: &Provider, http: reqwest::Client) -> OllamaClient {
        OllamaClient {
            root: p.base_url.trim_end_matches("/v1").to_string(),
            timeouts: Timeouts::of(p),
            http,
        }
    }

    pub fn body(model: &str, req: &ChatRequest) -> Value {
        let mut options = json!({"temperature": req.temperature, "num_predict": req.max_tokens});
        if let Some(n) = req.num_ctx {
            options["num_ctx"] = json!(n);
        }
        let mut body = json!({
            "model": model,
            "messages": req.messages,
            "stream": req.stream,
            "options": options,
        });
        if let Some(k) = &req.keep_alive {
            body["keep_alive"] = json!(k);
        }
        if let Some(schema) = &req.json_schema {
            body["format"] = schema.clone();
        }
        body
    }

    async fn chat_impl(
        &self,
        model: &str,
        req: &ChatRequest,
        mut sink: Option<Sink<'_>>,
    ) -> Result<ChatResponse, LlmError> {
        let started = Instant::now();
        let resp = super::send(
            super::traced(
                self.http
                    .post(format!("{}/api/chat", self.root))
                    .json(&Self::body(model, req)),
                req,
            ),
            self.timeouts.first_byte,
        )
        .await?;
        let mut text = String::new();
        let mut last: Option<Value> = None;
        let mut read =
            |v: Value, text: &mut String, sink: &mut Option<Sink<'_>>| -> Result<bool, LlmError> {
                if v.get("error").is_some() {
                    return Err(super::in_band_error(&v.to_string()));
                }
                if let Some(t) = v.pointer("/message/content").and_then(Value::as_str)
                    && !t.is_empty()
                {
                    text.push_str(t);
                    if let Some(s) = sink.as_mut() {
                        s(StreamEvent::Token(t));
                    }
                }
                let done = v.get("done").and_then(Value::as_bool).unwrap_or(false);
                last = Some(v);
                Ok(done)
            };
        let mut done = false;
        if req.stream {
            let mut lines = Lines::default();
            let mut stream = Body::stream(resp, self.timeouts);
            'read: while let Some(chunk) = stream.next().await? {
                for line in lines.push(&chunk) {
                    if line.trim().is_empty() {
                        continue;
                    }
                    let v: Value = serde_json::from_str(&line)
                        .map_err(|e| LlmError::StreamBroken(format!("a line is not JSON ({e})")))?;
                    if read(v, &mut text, &mut sink)? {
                        done = true;
                        break 'read;
                    }
                }
            }
            // The last line, if the server left off its newline.
            if !done && let Some(line) = lines.rest() {
                let v: Value = serde_json::from_str(&line)
                    .map_err(|e| LlmError::StreamBroken(format!("a line is not JSON ({e})")))?;
                done = read(v, &mut text, &mut sink)?;
            }
        } else {
            let body = Body::text(resp, self.timeouts).await?;
            let v: Value = serde_json::from_str(&body)
                .map_err(|e| LlmError::InvalidResponse(format!("not JSON ({e})")))?;
            done = read(v, &mut text, &mut None)?;
        }
        if !done {
            return Err(LlmError::StreamBroken(
                "the answer ended before `done`".into(),
            ));
        }
        let last = last.unwrap_or(Value::Null);
        let prompt = last.get("prompt_eval_count").and_then(Value::as_u64);
        let completion = last.get("eval_count").and_then(Value::as_u64);
        let usage = match (prompt, completion) {
            (Some(p), Some(c)) => Usage {
                prompt_tokens: p,
                completion_tokens: c,
                ..Usage::default()
            },
            _ => Usage::estimate(req, &text),
        };
        Ok(ChatResponse {
            tool_calls: Vec::new(),
            text,
            usage,
            finish_reason: last
                .get("done_reason")
                .and_then(Value::as_str)
                .map(String::from),
            latency: started.elapsed(),
        })
    }

    async fn health_impl(&self) -> Health {
        let rb = Ok(self.http.get(format!("{}/api/tags", self.root)));
        Health::from_list("/api/tags", super::list_models(rb, "models", "name").await)
    }
}

impl LlmClient for OllamaClient {
    fn chat<'a>(
        &'a self,
        model: &'a str,
        req: &'a ChatRequest,
        sink: Option<Sink<'a>>,
    ) -> BoxFuture<'a, Result<ChatResponse, LlmError>> {
        Box::pin(self.chat_impl(model, req, sink))
    }

    fn health(&self) -> BoxFuture<'_, Health> {
        Box::pin(self.health_impl())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::Message;

    #[test]
    fn num_ctx_and_keep_alive_go_native() {
        let req = ChatRequest {
            messages: vec![Message::user("hi")],
            num_ctx: Some(8192),
            keep_alive: Some("0s".into()),
            ..Default::default()
        };
        let b = OllamaClient::body("qwen2.5:7b-instruct", &req);
        assert_eq!(b["options"]["num_ctx"], 8192);
        assert_eq!(b["keep_alive"], "0s");
    }
}
