package api

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/getkin/kin-openapi/openapi3"
)

// openapiYAML is the API's contract, the source of internal/gen.
//
//go:embed openapi.yaml
var openapiYAML []byte

// documentJSON returns the OpenAPI document as JSON, checked once.
var documentJSON = sync.OnceValues(func() ([]byte, error) {
	doc, err := openapi3.NewLoader().LoadFromData(openapiYAML)
	if err != nil {
		return nil, fmt.Errorf("the OpenAPI document: %w", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("the OpenAPI document: %w", err)
	}
	return json.Marshal(doc)
})
