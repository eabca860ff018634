package mockllm

import "testing"

// imageBody is a request with a base64 image of the media type given, in the message
// or inside a tool result.
func imageBody(mediaType string, inToolResult bool) string {
	img := `{"type":"image","source":{"type":"base64","media_type":` + quote(mediaType) + `,"data":"AAAA"}}`
	if !inToolResult {
		return `{"model":"claude-mock","max_tokens":50,"messages":[{"role":"user","content":[{"type":"text","text":"what is it?"},` + img + `]}]}`
	}
	return toolTurns(weatherTool, toolUse("toolu_1"), `{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":[`+img+`]}]}`)
}

// TestMessagesImageMediaType: an image's base64 media_type is one of image/jpeg,
// image/png, image/gif and image/webp (the gateway sends a data URL's image/jpg as
// image/jpeg for this).
func TestMessagesImageMediaType(t *testing.T) {
	h := startAnthropic(t)
	t.Run("image/jpg refused", func(t *testing.T) {
		anthRefused(t, h, imageBody("image/jpg", false),
			"messages.0.content.1.image.source.base64.media_type: Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'")
	})
	t.Run("image/bmp in a tool result refused", func(t *testing.T) {
		anthRefused(t, h, imageBody("image/bmp", true), "messages.2.content.0.tool_result.content.0.image.source.base64.media_type")
	})
	for _, mt := range []string{"image/jpeg", "image/png", "image/gif", "image/webp"} {
		t.Run(mt+" taken", func(t *testing.T) { anthAccepted(t, h, imageBody(mt, false)) })
	}
	t.Run("url image taken", func(t *testing.T) {
		anthAccepted(t, h, `{"model":"claude-mock","max_tokens":50,"messages":[{"role":"user","content":[{"type":"image","source":{"type":"url","url":"https://example.com/a.jpg"}}]}]}`)
	})
}
