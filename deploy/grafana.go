package deploy

// The Grafana dashboard model, as much of it as this dashboard uses. Field
// order follows what Grafana itself writes, so an export diffs cleanly.
type (
	// Dashboard is a Grafana dashboard.
	Dashboard struct {
		ID            *int          `json:"id"`
		UID           string        `json:"uid"`
		Title         string        `json:"title"`
		Description   string        `json:"description"`
		Tags          []string      `json:"tags"`
		Timezone      string        `json:"timezone"`
		Editable      bool          `json:"editable"`
		GraphTooltip  int           `json:"graphTooltip"`
		Refresh       string        `json:"refresh"`
		SchemaVersion int           `json:"schemaVersion"`
		Version       int           `json:"version"`
		Time          TimeRange     `json:"time"`
		Links         []Link        `json:"links"`
		Annotations   AnnotationSet `json:"annotations"`
		Templating    Templating    `json:"templating"`
		Panels        []Panel       `json:"panels"`
	}
	// TimeRange is the default time range.
	TimeRange struct {
		From string `json:"from"`
		To   string `json:"to"`
	}
	// Link is a dashboard link.
	Link struct {
		Title       string `json:"title"`
		Type        string `json:"type"`
		URL         string `json:"url"`
		TargetBlank bool   `json:"targetBlank"`
		Icon        string `json:"icon"`
	}
	// Datasource refers to a data source by type and uid.
	Datasource struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	}
	// AnnotationSet holds the annotation queries.
	AnnotationSet struct {
		List []Annotation `json:"list"`
	}
	// Annotation is a Prometheus annotation query: a region wherever Expr
	// has a value.
	Annotation struct {
		Name        string      `json:"name"`
		Datasource  *Datasource `json:"datasource"`
		Enable      bool        `json:"enable"`
		Hide        bool        `json:"hide"`
		IconColor   string      `json:"iconColor"`
		Expr        string      `json:"expr"`
		Step        string      `json:"step"`
		TitleFormat string      `json:"titleFormat"`
		TextFormat  string      `json:"textFormat"`
		TagKeys     string      `json:"tagKeys"`
	}
	// Templating holds the template variables.
	Templating struct {
		List []Variable `json:"list"`
	}
	// Variable is a template variable.
	Variable struct {
		Name        string         `json:"name"`
		Label       string         `json:"label"`
		Type        string         `json:"type"`
		Datasource  *Datasource    `json:"datasource,omitempty"`
		Query       any            `json:"query"`
		Definition  string         `json:"definition,omitempty"`
		Refresh     int            `json:"refresh"`
		Regex       string         `json:"regex"`
		Sort        int            `json:"sort"`
		Multi       bool           `json:"multi"`
		IncludeAll  bool           `json:"includeAll"`
		AllValue    string         `json:"allValue,omitempty"`
		Current     map[string]any `json:"current"`
		Hide        int            `json:"hide"`
		Description string         `json:"description"`
	}
	// VariableQuery is a Prometheus variable query.
	VariableQuery struct {
		Query string `json:"query"`
		RefID string `json:"refId"`
	}
	// Panel is a dashboard panel, or a row when Type is "row".
	Panel struct {
		ID              int            `json:"id"`
		Type            string         `json:"type"`
		Title           string         `json:"title"`
		Description     string         `json:"description,omitempty"`
		Datasource      *Datasource    `json:"datasource"`
		GridPos         GridPos        `json:"gridPos"`
		Collapsed       *bool          `json:"collapsed,omitempty"`
		Repeat          string         `json:"repeat,omitempty"`
		RepeatDirection string         `json:"repeatDirection,omitempty"`
		MaxPerRow       int            `json:"maxPerRow,omitempty"`
		Targets         []Target       `json:"targets,omitempty"`
		FieldConfig     *FieldConfig   `json:"fieldConfig,omitempty"`
		Options         map[string]any `json:"options,omitempty"`
		Panels          []Panel        `json:"panels,omitempty"`
	}
	// GridPos places a panel on the 24-column grid.
	GridPos struct {
		H int `json:"h"`
		W int `json:"w"`
		X int `json:"x"`
		Y int `json:"y"`
	}
	// Target is one Prometheus query of a panel.
	Target struct {
		Datasource   *Datasource `json:"datasource"`
		RefID        string      `json:"refId"`
		Expr         string      `json:"expr"`
		LegendFormat string      `json:"legendFormat,omitempty"`
		Format       string      `json:"format,omitempty"`
		Instant      bool        `json:"instant,omitempty"`
		Range        bool        `json:"range"`
	}
	// FieldConfig carries units and thresholds.
	FieldConfig struct {
		Defaults  FieldDefaults `json:"defaults"`
		Overrides []any         `json:"overrides"`
	}
	// FieldDefaults are the panel-wide field settings.
	FieldDefaults struct {
		Unit       string         `json:"unit,omitempty"`
		Min        *float64       `json:"min,omitempty"`
		Max        *float64       `json:"max,omitempty"`
		Decimals   *int           `json:"decimals,omitempty"`
		Thresholds *Thresholds    `json:"thresholds,omitempty"`
		Custom     map[string]any `json:"custom,omitempty"`
		Color      map[string]any `json:"color,omitempty"`
	}
	// Thresholds colour values: each step applies from its value up.
	Thresholds struct {
		Mode  string `json:"mode"`
		Steps []Step `json:"steps"`
	}
	// Step is one threshold; the first has a nil Value (from -Inf).
	Step struct {
		Color string   `json:"color"`
		Value *float64 `json:"value"`
	}
)
